//go:build !patchd_cli

package main

import (
	"github.com/patchd/patchd/agent/config"
	"github.com/patchd/patchd/hooks"
	"github.com/patchd/patchd/hooks/hookmetrics"
)

// hooksPart is the daemon's hooks part: the runner the cycle calls and the
// watcher that keeps the hook lists (and patchd_hooks_refused) current.
type hooksPart struct {
	runner  *hooks.Runner
	watcher *hooks.Watcher
}

// setupHooks builds the runner and the watcher from the configuration. The
// hooks path changes only at restart (see reload); timeouts follow SIGHUP.
func (d *daemon) setupHooks() error {
	cfg := d.config()
	logger := d.logger.With("part", "hooks")
	metrics := hookmetrics.New(d.reg)
	h := &hooksPart{
		runner:  hooks.NewRunner(hookOptions(cfg, logger), metrics),
		watcher: hooks.NewWatcher(cfg.Paths.Hooks, logger, metrics),
	}
	d.hooks = h
	d.addActor("hooks-watcher", h.watcher.Run)
	d.onReload(func(c config.Config) { h.runner.SetOptions(hookOptions(c, logger)) })
	return nil
}
