package main

// hostStatePart is the daemon's host patch-state part. Owned by the host patch-state area; see setupHostState.
type hostStatePart struct{}

// setupHostState wires the host patch-state part into the daemon (not built yet).
func (d *daemon) setupHostState() error {
	d.hostState = &hostStatePart{}
	return nil
}
