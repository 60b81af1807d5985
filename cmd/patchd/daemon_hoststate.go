//go:build !patchd_cli

package main

import (
	"time"

	"github.com/patchd/patchd/agent/config"
	"github.com/patchd/patchd/agent/hoststate"
)

// hostStateFirstDelay is the wait before the first host-state check.
const hostStateFirstDelay = 10 * time.Second

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
		// A package query costs seconds of CPU: not in the first moments
		// after a (re)start.
		FirstDelay: hostStateFirstDelay,
	})
	if err := d.reg.Register(hs); err != nil {
		return err
	}
	d.hostState = &hostStatePart{hs: hs}
	d.addActor("host-state", hs.Run)
	d.onReload(func(c config.Config) { hs.SetConfig(c.HostState) })
	return nil
}
