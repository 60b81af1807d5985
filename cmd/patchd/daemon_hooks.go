package main

// hooksPart is the daemon's hooks part. Owned by the hooks area; see setupHooks.
type hooksPart struct{}

// setupHooks wires the hooks part into the daemon (not built yet).
func (d *daemon) setupHooks() error {
	d.hooks = &hooksPart{}
	return nil
}
