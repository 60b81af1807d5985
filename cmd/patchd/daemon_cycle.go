//go:build !patchd_cli

package main

import (
	"context"
	"encoding/json"
	"net/http"
	"os"
	"strconv"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/patchd/patchd/agent/atomicfile"
	"github.com/patchd/patchd/agent/config"
	"github.com/patchd/patchd/agent/control"
	"github.com/patchd/patchd/agent/cycle"
	"github.com/patchd/patchd/agent/ledger"
	"github.com/patchd/patchd/hooks"
)

// preRebootStopBound is how long a stop during a system shutdown may spend
// on pre-reboot hooks; the unit's TimeoutStopSec (120 s) covers it plus the
// normal stop.
const preRebootStopBound = 80 * time.Second

// killAfterPersistEnv makes patchd SIGKILL itself right after the Nth write
// of cycle.json. The crash tests use it to stop patchd at every persisted
// step of a cycle; it does nothing when unset.
const killAfterPersistEnv = "PATCHD_TEST_KILL_AFTER_PERSIST"

// cyclePart is the daemon's patch cycle: the engine and its control API.
type cyclePart struct {
	engine *cycle.Engine
}

// hookRunner adapts the hooks runner to the engine: it lists the phase
// directory afresh at each phase, so hooks.d changes need no restart.
type hookRunner struct {
	root   string
	runner *hooks.Runner
}

func (h hookRunner) Discover(p hooks.Phase) ([]hooks.Hook, error) { return hooks.Discover(h.root, p) }
func (h hookRunner) RunHook(ctx context.Context, hk hooks.Hook, env hooks.Env) hooks.Result {
	return h.runner.RunHook(ctx, hk, env)
}
func (h hookRunner) RecordPhase(p hooks.Phase, rs []hooks.Result) { h.runner.RecordPhase(p, rs) }
func (h hookRunner) HookTimeout(p hooks.Phase) time.Duration      { return h.runner.HookTimeout(p) }

func cycleSettings(c config.Config) cycle.Settings {
	return cycle.Settings{
		FailsafeAge:           c.Cycle.FailsafeAge,
		PostPatchRetries:      c.Hooks.PostPatchRetries,
		PostPatchRetryBackoff: c.Hooks.PostPatchRetryBackoff,
		LedgerMaxEntries:      c.Cycle.LedgerMaxEntries,
	}
}

// setupCycle builds the engine, subscribes it to command and log events
// (it only enqueues), and serves /v1/status and /v1/gate.
func (d *daemon) setupCycle() error {
	cfg := d.config()
	opts := cycle.Options{
		StateDir:  cfg.Paths.State,
		AgentData: cfg.Paths.AgentData,
		Runner:    hookRunner{root: cfg.Paths.Hooks, runner: d.hooks.runner},
		Settings:  func() cycle.Settings { return cycleSettings(d.config()) },
		Logger:    d.logger.With("part", "cycle"),
		Reg:       d.reg,
		Shutdown:  cycle.SystemdShutdown{},
		StopBound: preRebootStopBound,
		BootID:    cycle.BootID,
		// The payload of AWS-RunPatchBaseline downloads and starts for
		// seconds before a package changes.
		SnapshotDelay: 200 * time.Millisecond,
	}
	if d.fleet != nil {
		opts.OnClosed = d.fleet.cycleClosed
	}
	if s := ledger.Detect(); s != nil {
		opts.Packages = s
	}
	if n, err := strconv.Atoi(os.Getenv(killAfterPersistEnv)); err == nil && n > 0 {
		opts.AfterPersist = func(i int) {
			if i == n {
				_ = syscall.Kill(os.Getpid(), syscall.SIGKILL)
				select {} // the signal is on its way
			}
		}
	}
	e, err := cycle.New(opts)
	if err != nil {
		return err
	}
	// Every state file (cycle, ledger, offsets, keeper, role, host state)
	// is written through atomicfile, which counts the failures.
	d.reg.MustRegister(prometheus.NewCounterFunc(prometheus.CounterOpts{
		Name: "patchd_state_write_errors_total",
		Help: "Writes of patchd's state files that failed (read-only or full state directory); state not saved is lost at a crash.",
	}, func() float64 { return float64(atomicfile.Failures()) }))
	d.cycle = &cyclePart{engine: e}
	d.cmdSubs = append(d.cmdSubs, e.Command)
	d.logSubs = append(d.logSubs, e.Log)
	d.stopExtra = e.StopExtra
	d.addActor("cycle", e.Run)

	d.control.Mux.HandleFunc("GET /v1/status", func(w http.ResponseWriter, r *http.Request) {
		// The command watcher is set up after the cycle (producers last);
		// by the time a request comes it is there.
		watched := watchedFolders(cfg.Paths.AgentData)
		if d.commands != nil && d.commands.watcher != nil {
			watched = d.commands.watcher.Watched()
		}
		rep := statusReply{Status: e.Status(), Watched: watched}
		if d.fleet != nil {
			rep.SSMReports = d.fleet.uploads.Snapshot()
		}
		control.WriteJSON(w, http.StatusOK, rep)
	})
	d.control.Mux.HandleFunc("POST /v1/gate", func(w http.ResponseWriter, r *http.Request) {
		var req cycle.GateRequest
		if err := json.NewDecoder(http.MaxBytesReader(w, r.Body, 1<<16)).Decode(&req); err != nil {
			control.WriteError(w, http.StatusBadRequest, "bad gate request: "+err.Error())
			return
		}
		rep := e.Gate(r.Context(), req)
		if rep.Error != "" {
			// The gate's exit code follows the status: 503 is "try again
			// once patchd is back", 409 a request that cannot be served.
			status := http.StatusConflict
			if rep.Unavailable {
				status = http.StatusServiceUnavailable
			}
			control.WriteError(w, status, rep.Error)
			return
		}
		control.WriteJSON(w, http.StatusOK, rep)
	})
	return nil
}
