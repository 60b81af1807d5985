//go:build !patchd_cli

package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"path/filepath"
	"time"

	"github.com/patchd/patchd/agent/config"
	"github.com/patchd/patchd/agent/controlclient"
	"github.com/patchd/patchd/agent/imds"
	"github.com/patchd/patchd/agent/keeper"
)

func runAgentStatus(flags *config.Flags, output string, stdout, stderr io.Writer) int {
	cfg, err := flags.Resolve()
	if err != nil {
		return badConfig(stderr, "agent status", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var st agentStatus
	err = controlclient.New(cfg.Control.Socket, 10*time.Second).Do(ctx, "GET", "/v1/agent", nil, &st)
	if errors.Is(err, controlclient.ErrUnreachable) {
		st, err = agentStatusFromFiles(ctx, cfg)
	}
	if err != nil {
		fmt.Fprintf(stderr, "patchd agent status: %v\n", err)
		return exitFailure
	}
	if output == "json" {
		return writeJSON(stdout, st)
	}
	printAgentStatus(stdout, st)
	return exitOK
}

// agentStatusFromFiles answers without the daemon: the keeper's and the role
// watcher's state files, and the service manager asked directly.
func agentStatusFromFiles(ctx context.Context, cfg config.Config) (agentStatus, error) {
	st := agentStatus{Source: "files"}
	ks, err := keeper.LoadState(filepath.Join(cfg.Paths.State, keeper.StateFileName))
	if err != nil {
		return st, err
	}
	rs, known, err := imds.LoadState(filepath.Join(cfg.Paths.State, imds.StateFileName))
	if err != nil {
		return st, err
	}
	st.RestartEnabled = cfg.Agent.Restart
	st.MaxRestartsPerHour = cfg.Agent.MaxRestartsPerHour
	st.AgentVersion = ks.AgentVersion
	st.LastRestart, st.Pending = ks.Last, ks.Pending
	for _, r := range ks.Restarts {
		if time.Since(r.Time) < time.Hour {
			st.RestartsLastHour++
		}
	}
	if known {
		st.IdentityKnown, st.IdentityTime = true, rs.Since
		if rs.Attached {
			st.Identity = rs.Profile
		}
	}
	mgr, err := keeper.Detect(ctx, keeper.DetectOptions{Service: cfg.Agent.Service, RestartCommand: cfg.Agent.RestartCommand})
	if err != nil {
		st.Manager, st.ActiveError = "unknown", err.Error()
		return st, nil
	}
	st.Manager = mgr.Name()
	if active, err := mgr.Active(ctx); err != nil {
		st.ActiveError = err.Error()
	} else {
		st.Active = &active
	}
	return st, nil
}

func printAgentStatus(w io.Writer, st agentStatus) {
	yesNo := func(b bool) string {
		if b {
			return "yes"
		}
		return "no"
	}
	active := "unknown"
	switch {
	case st.Active != nil && *st.Active:
		active = "active"
	case st.Active != nil:
		active = "not active"
	case st.ActiveError != "":
		active = "unknown: " + st.ActiveError
	}
	fmt.Fprintf(w, "service manager:   %s (%s)\n", st.Manager, active)
	version := st.AgentVersion
	if version == "" {
		version = "unknown (no start banner seen in its log yet)"
	}
	fmt.Fprintf(w, "agent version:     %s\n", version)
	switch {
	case !st.IdentityKnown && st.IMDSError != "":
		fmt.Fprintf(w, "instance profile:  unknown (IMDS: %s)\n", st.IMDSError)
	case !st.IdentityKnown && !st.Identity.Attached():
		fmt.Fprintf(w, "instance profile:  unknown (IMDS not read yet)\n")
	case !st.Identity.Attached():
		fmt.Fprintf(w, "instance profile:  none attached\n")
	default:
		fmt.Fprintf(w, "instance profile:  %s (%s)\n", st.Identity.InstanceProfileArn, st.Identity.InstanceProfileID)
		fmt.Fprintf(w, "role:              %s\n", st.Identity.Role)
	}
	if st.Source == "daemon" {
		fmt.Fprintf(w, "IMDS credentials:  %s\n", yesNo(st.ServesCredentials))
		if !st.IdentityKnown && st.IMDSError != "" && st.Identity.Attached() {
			fmt.Fprintf(w, "                   (last known identity; IMDS now: %s)\n", st.IMDSError)
		}
	}
	restarts := "on"
	if !st.RestartEnabled {
		restarts = "off (agent.restart: false; patchd only logs what it would do)"
	}
	fmt.Fprintf(w, "restarts:          %s; %d in the last hour (limit %d)\n", restarts, st.RestartsLastHour, st.MaxRestartsPerHour)
	if r := st.LastRestart; r != nil {
		result := "ok"
		if !r.OK {
			result = "failed"
			if r.Error != "" {
				result += ": " + r.Error
			}
		}
		fmt.Fprintf(w, "last restart:      %s %s (%s) %s\n", r.Time.Local().Format(time.RFC3339), r.Reason, result, r.Detail)
	} else {
		fmt.Fprintf(w, "last restart:      none recorded\n")
	}
	if p := st.Pending; p != nil {
		how := "due"
		switch {
		case p.WaitingCredentials:
			how = "waiting until IMDS serves credentials for the role"
		case p.Refused:
			how = "held back by agent.max_restarts_per_hour"
		case p.Deferred:
			how = "deferred while documents are in current/"
		}
		fmt.Fprintf(w, "pending restart:   %s since %s, %s: %s\n", p.Reason, p.Since.Local().Format(time.RFC3339), how, p.Detail)
	} else {
		fmt.Fprintf(w, "pending restart:   none\n")
	}
	if e := st.CredentialsEpisode; e != nil {
		fmt.Fprintf(w, "credential errors: %d in the agent's log since %s (restarted for them: %s)\n", e.Lines, e.Since.Local().Format(time.RFC3339), yesNo(e.Restarted))
	}
	if st.Source == "files" {
		fmt.Fprintf(w, "(patchd is not running: read from the state files)\n")
	}
}

func runAgentRestart(flags *config.Flags, detail string, stdout, stderr io.Writer) int {
	cfg, err := flags.Resolve()
	if err != nil {
		return badConfig(stderr, "agent restart", err)
	}
	limit := cfg.Agent.RestartCheckTimeout + time.Minute
	ctx, cancel := context.WithTimeout(context.Background(), limit)
	defer cancel()
	var out keeper.Outcome
	if err := controlclient.New(cfg.Control.Socket, limit).Do(ctx, "POST", "/v1/agent/restart", agentRestartRequest{Detail: detail}, &out); err != nil {
		fmt.Fprintf(stderr, "patchd agent restart: %v\n", err)
		return daemonError(ctx, err)
	}
	fmt.Fprintf(stdout, "%s: %s\n", out.Action, out.Message)
	switch out.Action {
	case "failed", "refused":
		return exitFailure
	}
	return exitOK
}
