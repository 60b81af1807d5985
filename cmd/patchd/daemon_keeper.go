package main

// keeperPart is the daemon's agent keeper part. Owned by the agent keeper area; see setupKeeper.
type keeperPart struct{}

// setupKeeper wires the agent keeper part into the daemon (not built yet).
func (d *daemon) setupKeeper() error {
	d.keeper = &keeperPart{}
	return nil
}
