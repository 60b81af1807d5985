// Package config holds patchd's settings: their defaults (packaging/patchd.yaml), the
// YAML file that overrides them, and the command-line flags that override the
// file. Every setting has exactly one name in the file and one flag, so an
// operator can move a value between the two without translation.
package config

import (
	"time"
)

// DefaultFile is where the packages install the configuration.
const DefaultFile = "/etc/patchd/patchd.yaml"

// DefaultListenAddress is the metrics endpoint's default. The exporters' port
// range 9100-9999 is fully allocated in Prometheus's default port list, so
// patchd takes a port just above it that no well-known exporter documents.
const DefaultListenAddress = ":10795"

// Config is the whole configuration. The yaml tags are the keys of
// /etc/patchd/patchd.yaml; packaging/patchd.yaml documents each of them.
type Config struct {
	Paths     Paths     `yaml:"paths"`
	Control   Control   `yaml:"control"`
	Web       Web       `yaml:"web"`
	Log       Log       `yaml:"log"`
	Hooks     Hooks     `yaml:"hooks"`
	Cycle     Cycle     `yaml:"cycle"`
	AgentLog  AgentLog  `yaml:"agent_log"`
	IMDS      IMDS      `yaml:"imds"`
	Agent     Agent     `yaml:"agent"`
	HostState HostState `yaml:"host_state"`
	// Fleet view in Systems Manager (fleet.go).
	Inventory Inventory `yaml:"inventory"`
	SSM       SSM       `yaml:"ssm"`
}

// Paths are the host paths patchd reads and writes. Tests point them at
// temporary trees, as node_exporter's --path.* flags do.
type Paths struct {
	Hooks     string `yaml:"hooks"`
	State     string `yaml:"state"`
	AgentData string `yaml:"agent_data"`
	AgentLogs string `yaml:"agent_logs"`
}

// Control is the local control socket used by the CLI (gate, status).
type Control struct {
	Socket string `yaml:"socket"`
}

// Web is the metrics endpoint.
type Web struct {
	ListenAddress string `yaml:"listen_address"`
	// ConfigFile is an exporter-toolkit web configuration (TLS, basic auth).
	ConfigFile string `yaml:"config_file"`
}

// Log sets patchd's own logging.
type Log struct {
	Level  string `yaml:"level"`
	Format string `yaml:"format"`
}

// Hooks sets how hooks run.
type Hooks struct {
	// Timeout bounds one hook; the whole process group is killed after it.
	Timeout time.Duration `yaml:"timeout"`
	// KillGrace is the time between SIGTERM and SIGKILL at a timeout.
	KillGrace time.Duration `yaml:"kill_grace"`
	// PhaseTimeouts overrides Timeout per phase (pre-patch, pre-reboot, post-patch).
	PhaseTimeouts map[string]time.Duration `yaml:"phase_timeouts"`
	// PostPatchRetries is how often a failed post-patch hook is tried again.
	PostPatchRetries int `yaml:"post_patch_retries"`
	// PostPatchRetryBackoff is the first wait before such a retry; it doubles.
	PostPatchRetryBackoff time.Duration `yaml:"post_patch_retry_backoff"`
}

// Cycle sets how patch runs are recognised and how long a cycle may stay open.
type Cycle struct {
	// FailsafeAge closes a cycle that never saw its end as timed_out.
	FailsafeAge time.Duration `yaml:"failsafe_age"`
	// ExtraDocuments are document names or shell patterns (path.Match) that
	// count as patch runs besides the built-in list.
	ExtraDocuments []string `yaml:"extra_documents"`
	// LedgerMaxEntries bounds ledger.jsonl; older entries are rotated out.
	LedgerMaxEntries int `yaml:"ledger_max_entries"`
}

// AgentLog sets which of the agent's logs are followed.
type AgentLog struct {
	// Source is where the agent's log is read: "files" (Files inside
	// Paths.AgentLogs) or "journal" (the systemd journal, through
	// Journalctl), for hosts where the agent logs only there.
	Source string `yaml:"source"`
	// Journalctl is the journalctl command and the arguments that choose
	// the agent's entries, for Source journal; patchd adds --follow
	// --output=json and where to begin.
	Journalctl []string `yaml:"journalctl"`
	// Files are names inside Paths.AgentLogs.
	Files []string `yaml:"files"`
	// RotationGrace is how long a just-rotated file is still drained.
	RotationGrace time.Duration `yaml:"rotation_grace"`
}

// IMDS sets how the instance metadata service is polled.
type IMDS struct {
	// Endpoint overrides the IMDS address (empty: the SDK's default).
	Endpoint     string        `yaml:"endpoint"`
	PollInterval time.Duration `yaml:"poll_interval"`
	Timeout      time.Duration `yaml:"timeout"`
}

// Agent sets when and how amazon-ssm-agent is restarted.
type Agent struct {
	// Restart turns the agent keeper's restarts on or off; with it off patchd
	// still watches and reports.
	Restart bool `yaml:"restart"`
	// Service is auto, systemd:<unit>, snap, upstart, windows or command.
	Service string `yaml:"service"`
	// RestartCommand is run through /bin/sh -c when Service is command.
	RestartCommand      string        `yaml:"restart_command"`
	MaxDefer            time.Duration `yaml:"max_defer"`
	MaxRestartsPerHour  int           `yaml:"max_restarts_per_hour"`
	RestartCheckTimeout time.Duration `yaml:"restart_check_timeout"`
}

// HostState sets the host patch-state collectors.
type HostState struct {
	Interval       time.Duration `yaml:"interval"`
	CommandTimeout time.Duration `yaml:"command_timeout"`
	// RefreshCache lets dnf/yum refresh metadata from the network; off by
	// default so a scrape never causes repository traffic.
	RefreshCache bool `yaml:"refresh_cache"`
	// RebootRequiredFile is Debian/Ubuntu's marker file.
	RebootRequiredFile string `yaml:"reboot_required_file"`
	// PatchConfigurationDir holds the patch payload's local JSON files.
	PatchConfigurationDir string `yaml:"patch_configuration_dir"`
}

// Phases are the hook phases, in the order a cycle runs them.
var Phases = []string{"pre-patch", "pre-reboot", "post-patch"}

// Default returns the built-in configuration (docs/design.md, "Paths").
func Default() Config {
	c := Config{
		Paths: Paths{
			Hooks:     "/etc/patchd/hooks.d",
			State:     "/var/lib/patchd",
			AgentData: "/var/lib/amazon/ssm",
			AgentLogs: "/var/log/amazon/ssm",
		},
		Control: Control{Socket: "/run/patchd/patchd.sock"},
		Web:     Web{ListenAddress: DefaultListenAddress},
		Log:     Log{Level: "info", Format: "logfmt"},
		Hooks: Hooks{
			Timeout:               5 * time.Minute,
			KillGrace:             10 * time.Second,
			PhaseTimeouts:         map[string]time.Duration{},
			PostPatchRetries:      3,
			PostPatchRetryBackoff: 30 * time.Second,
		},
		Cycle: Cycle{
			FailsafeAge:      3 * time.Hour,
			LedgerMaxEntries: 1000,
		},
		AgentLog: AgentLog{
			Source: "files",
			Journalctl: []string{"journalctl", "--unit=amazon-ssm-agent.service",
				"--unit=snap.amazon-ssm-agent.amazon-ssm-agent.service"},
			Files:         []string{"amazon-ssm-agent.log", "errors.log"},
			RotationGrace: 5 * time.Second,
		},
		IMDS: IMDS{
			PollInterval: 60 * time.Second,
			Timeout:      5 * time.Second,
		},
		Agent: Agent{
			Restart:             true,
			Service:             "auto",
			MaxDefer:            2 * time.Hour,
			MaxRestartsPerHour:  3,
			RestartCheckTimeout: 2 * time.Minute,
		},
		HostState: HostState{
			Interval:              time.Hour,
			CommandTimeout:        2 * time.Minute,
			RebootRequiredFile:    "/run/reboot-required",
			PatchConfigurationDir: "/var/log/amazon/ssm/patch-configuration",
		},
	}
	fleetDefaults(&c)
	return c
}

// HookTimeout is the timeout for one hook of phase.
func (c *Config) HookTimeout(phase string) time.Duration {
	if d, ok := c.Hooks.PhaseTimeouts[phase]; ok && d > 0 {
		return d
	}
	return c.Hooks.Timeout
}
