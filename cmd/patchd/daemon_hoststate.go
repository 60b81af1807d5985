package main

import (
	"github.com/patchd/patchd/agent/config"
	"github.com/patchd/patchd/agent/hoststate"
)

// hostStatePart is the daemon's host patch-state part: the checks run on
// their own timer and the registry reads their cache.
type hostStatePart struct {
	hs *hoststate.HostState
}

// setupHostState wires the host patch-state collectors into the daemon.
func (d *daemon) setupHostState() error {
	cfg := d.config()
	hs := hoststate.New(hoststate.Options{
		Config:   cfg.HostState,
		StateDir: cfg.Paths.State,
		Logger:   d.logger.With("part", "host-state"),
	})
	if err := d.reg.Register(hs); err != nil {
		return err
	}
	d.hostState = &hostStatePart{hs: hs}
	d.addActor("host-state", hs.Run)
	d.onReload(func(c config.Config) { hs.SetConfig(c.HostState) })
	return nil
}
