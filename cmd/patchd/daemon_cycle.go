package main

// cyclePart is the daemon's cycle part. Owned by the cycle area; see setupCycle.
type cyclePart struct{}

// setupCycle wires the cycle part into the daemon (not built yet).
func (d *daemon) setupCycle() error {
	d.cycle = &cyclePart{}
	return nil
}
