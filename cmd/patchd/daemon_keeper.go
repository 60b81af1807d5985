//go:build !patchd_cli

package main

import (
	"context"
	"encoding/json"
	"net/http"
	"time"

	"github.com/patchd/patchd/agent/config"
	"github.com/patchd/patchd/agent/control"
	"github.com/patchd/patchd/agent/imds"
	"github.com/patchd/patchd/agent/keeper"
	"github.com/patchd/patchd/agent/ssm"
)

// keeperPart is the agent keeper: the role watcher polling IMDS and the
// keeper deciding when to restart amazon-ssm-agent.
type keeperPart struct {
	watcher *imds.Watcher
	keeper  *keeper.Keeper
}

// agentStatus is the answer of GET /v1/agent and the JSON of
// `patchd agent status`.
type agentStatus struct {
	// Source is "daemon", or "files" when the CLI read the state itself.
	Source string `json:"source"`
	keeper.Status
	Identity      imds.Identity `json:"identity"`
	IdentityKnown bool          `json:"identity_known"`
	IdentityTime  time.Time     `json:"identity_time,omitzero"`
	IMDSError     string        `json:"imds_error,omitempty"`
}

// agentRestartRequest is the body of POST /v1/agent/restart.
type agentRestartRequest struct {
	Detail string `json:"detail"`
}

// setupKeeper builds the watcher and the keeper. The service manager is
// detected here, once; a reload that changes agent.service detects again.
func (d *daemon) setupKeeper() error {
	cfg := d.config()
	mgr, err := detectManager(cfg)
	if err != nil {
		return err
	}
	d.logger.Info("amazon-ssm-agent service manager", "manager", mgr.Name(), "restart", cfg.Agent.Restart)
	p := &keeperPart{}
	p.keeper, err = keeper.New(keeper.Options{
		Config:    cfg.Agent,
		AgentData: cfg.Paths.AgentData,
		StateDir:  cfg.Paths.State,
		Manager:   mgr,
		Logger:    d.logger.With("part", "keeper"),
		// The watcher exists before any actor runs.
		RefreshCredentials: func() { p.watcher.PollSoon() },
		// The command watcher, built later in setup, is the one judge of
		// which documents the agent has; the keeper asks it.
		ListCurrent: func() ([]string, error) {
			if d.commands == nil {
				return ssm.ListFolder(cfg.Paths.AgentData, ssm.Current)
			}
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			return d.commands.watcher.Documents(ctx, ssm.Current)
		},
		Registerer: d.reg,
	})
	if err != nil {
		return err
	}
	if cfg.IMDS.Endpoint == "" && imds.ResolveEndpoint("") != "" {
		d.logger.Info("instance metadata address taken from the environment", "part", "role-watcher",
			"variable", imds.EndpointEnv, "endpoint", imds.ResolveEndpoint(""))
	}
	p.watcher, err = imds.New(imds.Options{
		Endpoint:     cfg.IMDS.Endpoint,
		PollInterval: cfg.IMDS.PollInterval,
		Timeout:      cfg.IMDS.Timeout,
		StateDir:     cfg.Paths.State,
		Logger:       d.logger.With("part", "role-watcher"),
		Registerer:   d.reg,
		OnObserve:    p.keeper.Observe,
	})
	if err != nil {
		return err
	}
	d.keeper = p
	d.logSubs = append(d.logSubs, p.keeper.LogEvent)
	// A document leaving current/ may free a deferred restart; Recheck only
	// signals.
	d.cmdSubs = append(d.cmdSubs, func(ev ssm.CommandEvent) {
		if ev.Kind == ssm.Gone {
			p.keeper.Recheck()
		}
	})
	d.addActor("keeper", p.keeper.Run)
	d.addActor("role-watcher", p.watcher.Run)
	d.onReload(func(c config.Config) {
		p.watcher.SetConfig(c.IMDS.Endpoint, c.IMDS.PollInterval, c.IMDS.Timeout)
		if c.Agent.Service != cfg.Agent.Service || c.Agent.RestartCommand != cfg.Agent.RestartCommand {
			m, err := detectManager(c)
			if err != nil {
				d.logger.Error("keeping the agent's service manager", "manager", p.keeper.Status().Manager, "err", err)
			} else {
				d.logger.Info("amazon-ssm-agent service manager changed", "manager", m.Name())
				p.keeper.SetManager(m)
				cfg.Agent.Service, cfg.Agent.RestartCommand = c.Agent.Service, c.Agent.RestartCommand
			}
		}
		p.keeper.SetConfig(c.Agent)
	})
	d.control.Mux.HandleFunc("GET /v1/agent", func(w http.ResponseWriter, _ *http.Request) {
		control.WriteJSON(w, http.StatusOK, p.status())
	})
	d.control.Mux.HandleFunc("POST /v1/agent/restart", func(w http.ResponseWriter, r *http.Request) {
		var req agentRestartRequest
		if r.ContentLength != 0 {
			if err := json.NewDecoder(http.MaxBytesReader(w, r.Body, 64<<10)).Decode(&req); err != nil {
				control.WriteError(w, http.StatusBadRequest, "bad request body: "+err.Error())
				return
			}
		}
		detail := req.Detail
		if detail == "" {
			detail = "patchd agent restart"
		}
		out := p.keeper.Request(keeper.Manual, detail)
		// The first decision comes at once, or after the restart and its
		// check (agent.restart_check_timeout).
		limit := d.config().Agent.RestartCheckTimeout + 30*time.Second
		select {
		case o := <-out:
			control.WriteJSON(w, http.StatusOK, o)
		case <-time.After(limit):
			control.WriteJSON(w, http.StatusOK, keeper.Outcome{Action: "pending", Message: "no decision within " + limit.String() + "; see patchd agent status"})
		case <-r.Context().Done():
		}
	})
	return nil
}

func (p *keeperPart) status() agentStatus {
	obs := p.watcher.Current()
	s := agentStatus{Source: "daemon", Status: p.keeper.Status(), Identity: obs.Identity, IdentityKnown: obs.Known, IdentityTime: obs.Time}
	if obs.Err != nil {
		s.IMDSError = obs.Err.Error()
	}
	return s
}

// detectManager finds the agent's service manager for cfg.
func detectManager(cfg config.Config) (keeper.Manager, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	return keeper.Detect(ctx, keeper.DetectOptions{Service: cfg.Agent.Service, RestartCommand: cfg.Agent.RestartCommand})
}
