package main

import (
	"path/filepath"

	"github.com/patchd/patchd/agent/inventory"
	"github.com/patchd/patchd/agent/ledger"
	"github.com/patchd/patchd/agent/uploads"
)

// fleetPart is the fleet view in Systems Manager: the ledger as custom
// inventory for the agent to upload, and (compliance) hook and cycle
// results sent to the service. Both follow closed cycles.
type fleetPart struct {
	uploads   *uploads.Tracker
	inventory *inventory.Writer
}

// cycleClosed fans a closed cycle out to the fleet's parts; each only
// enqueues.
func (f *fleetPart) cycleClosed(e ledger.Entry) {
	if f.inventory != nil {
		f.inventory.CycleClosed(e)
	}
}

// setupFleet runs before the cycle, whose closed cycles it follows.
func (d *daemon) setupFleet() error {
	cfg := d.config()
	tr, err := uploads.New(d.reg)
	if err != nil {
		return err
	}
	f := &fleetPart{uploads: tr}
	if cfg.Inventory.Enabled {
		f.inventory, err = inventory.New(inventory.Options{
			LedgerPath: filepath.Join(cfg.Paths.State, ledger.FileName),
			Dir:        cfg.Inventory.Directory,
			AgentData:  cfg.Paths.AgentData,
			Logger:     d.logger.With("part", "inventory"),
			Reg:        d.reg,
			Uploads:    tr,
		})
		if err != nil {
			return err
		}
		d.addActor("inventory", f.inventory.Run)
	}
	d.fleet = f
	return nil
}
