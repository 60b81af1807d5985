package main

import (
	"path/filepath"
	"slices"

	"github.com/patchd/patchd/agent/agentlog"
	"github.com/patchd/patchd/agent/config"
)

// agentLogPart follows amazon-ssm-agent's logs and puts their entries on the
// daemon's log event stream (the keeper uses credentials_error, the cycle
// reboot and command_end).
type agentLogPart struct {
	tailer  *agentlog.Tailer
	metrics *agentlog.Metrics
}

func (d *daemon) setupAgentLog() error {
	cfg := d.config()
	m := agentlog.NewMetrics(d.reg, cfg.AgentLog.Files)
	t, err := agentlog.New(agentlog.Options{
		Dir:           cfg.Paths.AgentLogs,
		Files:         cfg.AgentLog.Files,
		StatePath:     filepath.Join(cfg.Paths.State, agentlog.StateFile),
		RotationGrace: cfg.AgentLog.RotationGrace,
		Sink:          d.emitLog,
		Logger:        d.logger.With("part", "agent-log"),
		Metrics:       m,
	})
	if err != nil {
		return err
	}
	d.agentLog = &agentLogPart{tailer: t, metrics: m}
	d.addActor("agent-log", t.Run)
	d.onReload(func(c config.Config) {
		if !slices.Equal(c.AgentLog.Files, cfg.AgentLog.Files) || c.AgentLog.RotationGrace != cfg.AgentLog.RotationGrace {
			d.logger.Warn("agent_log settings change only at restart; run systemctl restart patchd", "part", "agent-log")
		}
	})
	return nil
}
