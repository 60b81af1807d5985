//go:build !patchd_cli

package main

import (
	"path/filepath"
	"slices"

	"github.com/patchd/patchd/agent/agentlog"
	"github.com/patchd/patchd/agent/config"
)

// agentLogPart follows amazon-ssm-agent's logs and puts their entries on the
// daemon's log event stream (the keeper uses credentials_error, the cycle
// reboot and command_end). It reads the agent's log files or, with
// agent_log.source journal, the systemd journal.
type agentLogPart struct {
	tailer  *agentlog.Tailer        // source files
	journal *agentlog.JournalReader // source journal
	metrics *agentlog.Metrics
}

func (d *daemon) setupAgentLog() error {
	cfg := d.config()
	logger := d.logger.With("part", "agent-log")
	part := &agentLogPart{}
	if cfg.AgentLog.Source == "journal" {
		part.metrics = agentlog.NewMetrics(d.reg, []string{agentlog.JournalFile})
		j, err := agentlog.NewJournalReader(agentlog.JournalOptions{
			Command:   cfg.AgentLog.Journalctl,
			StatePath: filepath.Join(cfg.Paths.State, agentlog.CursorFile),
			Sink:      d.emitLog,
			Logger:    logger,
			Metrics:   part.metrics,
		})
		if err != nil {
			return err
		}
		part.journal = j
		d.addActor("agent-log", j.Run)
	} else {
		part.metrics = agentlog.NewMetrics(d.reg, cfg.AgentLog.Files)
		t, err := agentlog.New(agentlog.Options{
			Dir:           cfg.Paths.AgentLogs,
			Files:         cfg.AgentLog.Files,
			StatePath:     filepath.Join(cfg.Paths.State, agentlog.StateFile),
			RotationGrace: cfg.AgentLog.RotationGrace,
			Sink:          d.emitLog,
			Logger:        logger,
			Metrics:       part.metrics,
		})
		if err != nil {
			return err
		}
		part.tailer = t
		d.addActor("agent-log", t.Run)
	}
	d.agentLog = part
	d.onReload(func(c config.Config) {
		if c.AgentLog.Source != cfg.AgentLog.Source || !slices.Equal(c.AgentLog.Journalctl, cfg.AgentLog.Journalctl) ||
			!slices.Equal(c.AgentLog.Files, cfg.AgentLog.Files) || c.AgentLog.RotationGrace != cfg.AgentLog.RotationGrace {
			d.logger.Warn("agent_log settings change only at restart; run systemctl restart patchd", "part", "agent-log")
		}
	})
	return nil
}
