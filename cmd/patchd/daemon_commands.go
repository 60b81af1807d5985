package main

// commandsPart is the daemon's command watcher part. Owned by the command watcher area; see setupCommands.
type commandsPart struct{}

// setupCommands wires the command watcher part into the daemon (not built yet).
func (d *daemon) setupCommands() error {
	d.commands = &commandsPart{}
	return nil
}
