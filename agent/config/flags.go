package config

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/alecthomas/kingpin/v2"
)

// Flags binds one command-line flag to every setting. A flag given on the
// command line wins over the file; a flag left alone leaves the file's value.
type Flags struct {
	// File is --config.file.
	File string
	// FileSet reports whether --config.file was given; a missing default file
	// is tolerated, a missing named one is not.
	FileSet bool

	values Config
	apply  []func(dst *Config)
	// errs are flag values that could not be parsed (only a map flag can
	// fail after kingpin accepted it); Resolve reports them.
	errs []error
}

// AddFlags registers the flags on app as global flags, so that every
// subcommand accepts them (patchd hooks list --path.hooks DIR).
func AddFlags(app *kingpin.Application) *Flags {
	f := &Flags{values: Default()}
	def := Default()
	app.Flag("config.file", "Path to the YAML configuration file.").
		Default(DefaultFile).IsSetByUser(&f.FileSet).StringVar(&f.File)

	str := func(name, help string, get func(*Config) *string) {
		set := new(bool)
		app.Flag(name, help).Default(*get(&def)).IsSetByUser(set).StringVar(get(&f.values))
		f.apply = append(f.apply, func(dst *Config) {
			if *set {
				*get(dst) = *get(&f.values)
			}
		})
	}
	dur := func(name, help string, get func(*Config) *time.Duration) {
		set := new(bool)
		app.Flag(name, help).Default(get(&def).String()).IsSetByUser(set).DurationVar(get(&f.values))
		f.apply = append(f.apply, func(dst *Config) {
			if *set {
				*get(dst) = *get(&f.values)
			}
		})
	}
	num := func(name, help string, get func(*Config) *int) {
		set := new(bool)
		app.Flag(name, help).Default(strconv.Itoa(*get(&def))).IsSetByUser(set).IntVar(get(&f.values))
		f.apply = append(f.apply, func(dst *Config) {
			if *set {
				*get(dst) = *get(&f.values)
			}
		})
	}
	boolean := func(name, help string, get func(*Config) *bool) {
		set := new(bool)
		app.Flag(name, help).Default(strconv.FormatBool(*get(&def))).IsSetByUser(set).BoolVar(get(&f.values))
		f.apply = append(f.apply, func(dst *Config) {
			if *set {
				*get(dst) = *get(&f.values)
			}
		})
	}
	list := func(name, help string, get func(*Config) *[]string) {
		set := new(bool)
		// kingpin's repeatable flags cannot tell a default from a value; a
		// comma list keeps the flag and the YAML list one-to-one.
		raw := new(string)
		app.Flag(name, help+" Comma-separated.").Default(strings.Join(*get(&def), ",")).IsSetByUser(set).StringVar(raw)
		f.apply = append(f.apply, func(dst *Config) {
			if *set {
				*get(dst) = splitList(*raw)
			}
		})
	}

	str("path.hooks", "Directory of hook phases (pre-patch/, pre-reboot/, post-patch/).", func(c *Config) *string { return &c.Paths.Hooks })
	str("path.state", "Directory for patchd's state, ledger and log offsets.", func(c *Config) *string { return &c.Paths.State })
	str("path.agent-data", "amazon-ssm-agent's data directory.", func(c *Config) *string { return &c.Paths.AgentData })
	str("path.agent-logs", "amazon-ssm-agent's log directory.", func(c *Config) *string { return &c.Paths.AgentLogs })
	str("control.socket", "Unix socket for the CLI (status, gate).", func(c *Config) *string { return &c.Control.Socket })
	str("web.listen-address", "Address for /metrics; empty serves no metrics.", func(c *Config) *string { return &c.Web.ListenAddress })
	phaseDurations := func(name, help string, get func(*Config) *map[string]time.Duration) {
		set := new(bool)
		raw := new(string)
		app.Flag(name, help+" Comma-separated PHASE=DURATION pairs, e.g. pre-patch=30m,post-patch=1h.").
			Default(formatPhaseDurations(*get(&def))).IsSetByUser(set).StringVar(raw)
		f.apply = append(f.apply, func(dst *Config) {
			if !*set {
				return
			}
			m, err := parsePhaseDurations(*raw)
			if err != nil {
				f.errs = append(f.errs, fmt.Errorf("--%s=%s: %w", name, *raw, err))
				return
			}
			*get(dst) = m
		})
	}
	str("web.config.file", "exporter-toolkit web configuration (TLS and basic auth) for /metrics.", func(c *Config) *string { return &c.Web.ConfigFile })
	str("log.level", "Only log messages of this level or above: debug, info, warn, error.", func(c *Config) *string { return &c.Log.Level })
	str("log.format", "Log format: logfmt or json.", func(c *Config) *string { return &c.Log.Format })
	dur("hooks.timeout", "Time one hook may run before its process group is killed.", func(c *Config) *time.Duration { return &c.Hooks.Timeout })
	phaseDurations("hooks.phase-timeouts", "Per-phase hook timeouts, over --hooks.timeout.", func(c *Config) *map[string]time.Duration { return &c.Hooks.PhaseTimeouts })
	dur("hooks.kill-grace", "Time between SIGTERM and SIGKILL when a hook times out.", func(c *Config) *time.Duration { return &c.Hooks.KillGrace })
	num("hooks.post-patch-retries", "Retries of a failed post-patch hook.", func(c *Config) *int { return &c.Hooks.PostPatchRetries })
	dur("hooks.post-patch-retry-backoff", "First wait before retrying a failed post-patch hook; doubles each time.", func(c *Config) *time.Duration { return &c.Hooks.PostPatchRetryBackoff })
	dur("cycle.failsafe-age", "Age after which an open cycle is closed as timed_out and post-patch runs.", func(c *Config) *time.Duration { return &c.Cycle.FailsafeAge })
	list("cycle.extra-documents", "Document names or patterns that also count as patch runs.", func(c *Config) *[]string { return &c.Cycle.ExtraDocuments })
	num("cycle.ledger-max-entries", "Entries kept in ledger.jsonl.", func(c *Config) *int { return &c.Cycle.LedgerMaxEntries })
	str("agent-log.source", "Where the agent's log is read: files (--agent-log.files) or journal (--agent-log.journalctl).", func(c *Config) *string { return &c.AgentLog.Source })
	list("agent-log.journalctl", "journalctl and the arguments that choose the agent's entries, for --agent-log.source=journal.", func(c *Config) *[]string { return &c.AgentLog.Journalctl })
	list("agent-log.files", "Agent log files to follow, inside --path.agent-logs.", func(c *Config) *[]string { return &c.AgentLog.Files })
	dur("agent-log.rotation-grace", "How long a rotated log file is still drained.", func(c *Config) *time.Duration { return &c.AgentLog.RotationGrace })
	str("imds.endpoint", "Instance metadata service address (empty: $AWS_EC2_METADATA_SERVICE_ENDPOINT, else 169.254.169.254).", func(c *Config) *string { return &c.IMDS.Endpoint })
	dur("imds.poll-interval", "How often the instance's IAM role is read from IMDS (with jitter).", func(c *Config) *time.Duration { return &c.IMDS.PollInterval })
	dur("imds.timeout", "Timeout of one IMDS request.", func(c *Config) *time.Duration { return &c.IMDS.Timeout })
	boolean("agent.restart", "Restart amazon-ssm-agent on a role change or stuck credentials (--no-agent.restart: only watch).", func(c *Config) *bool { return &c.Agent.Restart })
	str("agent.service", "Service manager of amazon-ssm-agent: auto, systemd, systemd:<unit>, snap, upstart, windows, command.", func(c *Config) *string { return &c.Agent.Service })
	str("agent.restart-command", "Command (sh -c) that restarts the agent when --agent.service=command.", func(c *Config) *string { return &c.Agent.RestartCommand })
	dur("agent.max-defer", "Longest a restart waits for running commands to finish.", func(c *Config) *time.Duration { return &c.Agent.MaxDefer })
	num("agent.max-restarts-per-hour", "Most agent restarts in any hour.", func(c *Config) *int { return &c.Agent.MaxRestartsPerHour })
	dur("agent.restart-check-timeout", "How long to wait for the agent to be active again after a restart.", func(c *Config) *time.Duration { return &c.Agent.RestartCheckTimeout })
	dur("host-state.interval", "How often reboot-required, pending updates and kernel state are checked.", func(c *Config) *time.Duration { return &c.HostState.Interval })
	dur("host-state.command-timeout", "Timeout of one package-manager query.", func(c *Config) *time.Duration { return &c.HostState.CommandTimeout })
	boolean("host-state.refresh-cache", "Let dnf/yum refresh repository metadata when counting updates.", func(c *Config) *bool { return &c.HostState.RefreshCache })
	str("host-state.reboot-required-file", "Debian/Ubuntu reboot marker file.", func(c *Config) *string { return &c.HostState.RebootRequiredFile })
	str("host-state.patch-configuration-dir", "Directory of the patch payload's local JSON files.", func(c *Config) *string { return &c.HostState.PatchConfigurationDir })
	fleetFlags(str, boolean, dur)
	return f
}

// parsePhaseDurations reads "pre-patch=30m,post-patch=1h" (empty: none).
// Unknown phases and non-positive durations are left to Validate, which
// names them as it does for the file.
func parsePhaseDurations(s string) (map[string]time.Duration, error) {
	m := map[string]time.Duration{}
	for _, p := range splitList(s) {
		phase, v, ok := strings.Cut(p, "=")
		if !ok {
			return nil, fmt.Errorf("%q is not PHASE=DURATION (e.g. pre-patch=30m)", p)
		}
		d, err := time.ParseDuration(strings.TrimSpace(v))
		if err != nil {
			return nil, fmt.Errorf("%q: the duration is not like 30s, 5m or 1h30m", p)
		}
		m[strings.TrimSpace(phase)] = d
	}
	return m, nil
}

// formatPhaseDurations is parsePhaseDurations' inverse, in phase order.
func formatPhaseDurations(m map[string]time.Duration) string {
	var parts []string
	for _, phase := range Phases {
		if d, ok := m[phase]; ok {
			parts = append(parts, phase+"="+d.String())
		}
	}
	return strings.Join(parts, ",")
}

func splitList(s string) []string {
	var out []string
	for _, p := range strings.Split(s, ",") {
		if p = strings.TrimSpace(p); p != "" {
			out = append(out, p)
		}
	}
	return out
}

// Resolve loads the configuration file named by the flags, applies the flags
// given on the command line over it, and validates the result. With an
// error, the configuration returned is the defaults (or what the file set
// before the error) with the flags applied, for callers that report as
// much as they can.
func (f *Flags) Resolve() (Config, error) {
	cfg, err := Load(f.File, !f.FileSet)
	// The flags apply even over a file that failed: `patchd check
	// --path.hooks DIR` must check DIR, not the default, while it reports
	// the file's problems (a bad flag value is reported once the file is
	// fixed).
	f.errs = nil
	for _, a := range f.apply {
		a(&cfg)
	}
	if err != nil {
		return cfg, err
	}
	if len(f.errs) > 0 {
		return cfg, errors.Join(f.errs...)
	}
	// Validate again: a flag may have brought a bad value.
	if err := cfg.Validate(f.File + " (with command-line flags)"); err != nil {
		return cfg, err
	}
	return cfg, nil
}

// String prints the configuration's source for logs.
func (f *Flags) String() string { return fmt.Sprintf("config.file=%s", f.File) }
