//go:build !patchd_cli

package main

import (
	"github.com/patchd/patchd/agent/config"
	"github.com/patchd/patchd/agent/ssm"
)

// commandsPart is the daemon's command watcher: it follows amazon-ssm-agent's
// document state folders and fans CommandEvents out to d.cmdSubs.
type commandsPart struct {
	watcher *ssm.Watcher
}

// setupCommands wires the command watcher. It runs after the consumers'
// setup, so the first events (files already in current/ after a reboot)
// reach every subscriber.
func (d *daemon) setupCommands() error {
	cfg := d.config()
	var opts []ssm.Option
	if d.cycle != nil && d.cycle.engine != nil {
		// The watcher is the one judge of the agent's documents: a cycle
		// whose document left while patchd was down learns it here.
		opts = append(opts, ssm.WithFirstScan(d.cycle.engine.DocumentsScanned))
	}
	w := ssm.NewWatcher(cfg.Paths.AgentData, cfg.Cycle.ExtraDocuments, d.logger.With("part", "commands"), d.reg, d.emitCommand, opts...)
	d.addActor("commands", w.Run)
	d.onReload(func(c config.Config) { w.SetPatterns(c.Cycle.ExtraDocuments) })
	d.commands = &commandsPart{watcher: w}
	return nil
}
