//go:build !patchd_cli

package main

import (
	"context"
	"io"
	"path/filepath"
	"regexp"
	"strings"
	"time"

	awsimds "github.com/aws/aws-sdk-go-v2/feature/ec2/imds"

	"github.com/patchd/patchd/agent/compliance"
	"github.com/patchd/patchd/agent/imds"
	"github.com/patchd/patchd/agent/inventory"
	"github.com/patchd/patchd/agent/ledger"
	"github.com/patchd/patchd/agent/uploads"
)

// fleetPart is the fleet view in Systems Manager: the ledger as custom
// inventory for the agent to upload, and hook and cycle results sent to
// the service as compliance. Both follow closed cycles.
type fleetPart struct {
	uploads    *uploads.Tracker
	inventory  *inventory.Writer
	compliance *compliance.Reporter
}

// cycleClosed fans a closed cycle out to the fleet's parts; each only
// enqueues.
func (f *fleetPart) cycleClosed(e ledger.Entry) {
	if f.inventory != nil {
		f.inventory.CycleClosed(e)
	}
	if f.compliance != nil {
		f.compliance.CycleClosed(e)
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
	lpath := filepath.Join(cfg.Paths.State, ledger.FileName)
	if cfg.Inventory.Enabled {
		f.inventory, err = inventory.New(inventory.Options{
			LedgerPath: lpath,
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
	} else {
		tr.Disable(uploads.KindInventory, "inventory.enabled is false")
	}
	if cfg.SSM.Report != compliance.ModeOff {
		f.compliance = compliance.New(compliance.Options{
			StateDir:   cfg.Paths.State,
			LedgerPath: lpath,
			Mode:       cfg.SSM.Report,
			InstanceID: func(ctx context.Context) string { return instanceID(ctx, cfg.Paths.AgentData, cfg.IMDS.Endpoint) },
			Connect: func(ctx context.Context) (compliance.Sender, error) {
				c := d.config()
				s, err := compliance.Connect(ctx, compliance.ConnectOptions{IMDSEndpoint: c.IMDS.Endpoint, Endpoint: c.SSM.Endpoint})
				if err != nil {
					return nil, err
				}
				return s, nil
			},
			Severity: func(phase string) string { return d.config().SSM.Severity(phase) },
			Open: func() (compliance.OpenCycle, bool) {
				if d.cycle == nil {
					return compliance.OpenCycle{}, false
				}
				c := d.cycle.engine.Status().Current
				if c == nil {
					return compliance.OpenCycle{}, false
				}
				return compliance.OpenCycle{ID: c.ID, CommandID: c.Document.CommandID, Opened: c.Opened}, true
			},
			FailsafeAge: func() time.Duration { return d.config().Cycle.FailsafeAge },
			MaxRetry:    cfg.SSM.RetryMax,
			Logger:      d.logger.With("part", "compliance"),
			Uploads:     tr,
		})
		d.addActor("compliance", f.compliance.Run)
	} else {
		tr.Disable(uploads.KindCompliance, "ssm.report is off")
	}
	d.fleet = f
	return nil
}

var instanceFolder = regexp.MustCompile(`^(i-[0-9a-f]{8}([0-9a-f]{9})?|mi-[0-9a-f]{17})$`)

// instanceID is the managed node's id: the agent's instance folder (it is
// what the agent registered, hybrid nodes included), else IMDS's.
func instanceID(ctx context.Context, agentData, imdsEndpoint string) string {
	m, _ := filepath.Glob(filepath.Join(agentData, "*"))
	var found []string
	for _, p := range m {
		if instanceFolder.MatchString(filepath.Base(p)) {
			found = append(found, filepath.Base(p))
		}
	}
	if len(found) == 1 {
		return found[0]
	}
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	out, err := awsimds.New(awsimds.Options{Endpoint: imds.ResolveEndpoint(imdsEndpoint)}).GetMetadata(ctx, &awsimds.GetMetadataInput{Path: "instance-id"})
	if err != nil {
		return ""
	}
	defer out.Content.Close()
	b, _ := io.ReadAll(io.LimitReader(out.Content, 64))
	return strings.TrimSpace(string(b))
}
