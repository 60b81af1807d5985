package config

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"path"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/patchd/patchd/agent/safeopen"
)

// Problem is one thing wrong with a configuration, located as precisely as
// the input allows. Error() reads "file:line: key: what is wrong; how to fix".
type Problem struct {
	File string
	Line int    // 0 when unknown (e.g. a value that came from a flag)
	Key  string // dotted key, e.g. hooks.timeout
	Msg  string
}

func (p Problem) Error() string {
	var b strings.Builder
	if p.File != "" {
		b.WriteString(p.File)
		if p.Line > 0 {
			fmt.Fprintf(&b, ":%d", p.Line)
		}
		b.WriteString(": ")
	}
	if p.Key != "" {
		b.WriteString(p.Key)
		b.WriteString(": ")
	}
	b.WriteString(p.Msg)
	return b.String()
}

// Problems is a list of Problem that is itself an error.
type Problems []Problem

func (ps Problems) Error() string {
	lines := make([]string, len(ps))
	for i, p := range ps {
		lines[i] = p.Error()
	}
	return strings.Join(lines, "\n")
}

// MaxFileSize bounds the configuration file: a real one is a few KiB, and a
// link to /dev/zero or a runaway generator must not be read until the
// kernel kills patchd.
const MaxFileSize = 1 << 20

// Load reads the file at path over the defaults. A missing file is not an
// error when allowMissing is set (the built-in defaults then apply), so the
// CLI works on hosts where the package's file was removed.
func Load(file string, allowMissing bool) (Config, error) {
	cfg := Default()
	// A FIFO or device as the configuration must fail here, not block
	// patchd at start with SIGTERM ignored.
	data, err := safeopen.ReadFile(file, MaxFileSize)
	if err != nil {
		if allowMissing && errors.Is(err, fs.ErrNotExist) {
			return cfg, nil
		}
		return cfg, Problems{{File: file, Msg: fmt.Sprintf("cannot read the configuration: %v; create it (see /usr/share/doc/patchd/patchd.yaml) or pass --config.file", err)}}
	}
	if err := Parse(file, data, &cfg); err != nil {
		return cfg, err
	}
	return cfg, nil
}

// yamlLine matches the "line N: message" items of yaml.v3's TypeError. These
// patterns are compiled on first use: only a bad file needs them.
var yamlLine = sync.OnceValue(func() *regexp.Regexp { return regexp.MustCompile(`^line (\d+): (.*)$`) })
var unknownField = sync.OnceValue(func() *regexp.Regexp { return regexp.MustCompile(`^field (\S+) not found in type config\.(\w+)$`) })
var cannotUnmarshal = sync.OnceValue(func() *regexp.Regexp { return regexp.MustCompile("^cannot unmarshal !!(\\w+) `(.*)` into (.+)$") })

// Parse decodes data over cfg and validates the result. Unknown keys and
// wrong types are reported with their line.
func Parse(file string, data []byte, cfg *Config) error {
	var root yaml.Node
	if err := yaml.Unmarshal(data, &root); err != nil {
		return Problems{syntaxProblem(file, err)}
	}
	if len(root.Content) == 0 {
		// An empty file (or only comments) means: all defaults.
		return cfg.validate(file, &root)
	}
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	if err := dec.Decode(cfg); err != nil {
		var te *yaml.TypeError
		if errors.As(err, &te) {
			var ps Problems
			for _, e := range te.Errors {
				ps = append(ps, typeProblem(file, &root, e))
			}
			return ps
		}
		return Problems{syntaxProblem(file, err)}
	}
	return cfg.validate(file, &root)
}

func syntaxProblem(file string, err error) Problem {
	msg := strings.TrimPrefix(err.Error(), "yaml: ")
	line := 0
	if m := regexp.MustCompile(`^line (\d+): (.*)$`).FindStringSubmatch(msg); m != nil {
		line, _ = strconv.Atoi(m[1])
		msg = m[2]
	}
	return Problem{File: file, Line: line, Msg: "not valid YAML: " + msg + "; fix the syntax (indent with spaces, key: value)"}
}

// sectionKeys maps a Go type name to its section for messages.
var sectionOfType = map[string]string{
	"Config": "", "Paths": "paths", "Control": "control", "Web": "web", "Log": "log",
	"Hooks": "hooks", "Cycle": "cycle", "AgentLog": "agent_log", "IMDS": "imds",
	"Agent": "agent", "HostState": "host_state",
}

func typeProblem(file string, root *yaml.Node, item string) Problem {
	m := yamlLine().FindStringSubmatch(item)
	if m == nil {
		return Problem{File: file, Msg: item}
	}
	line, _ := strconv.Atoi(m[1])
	msg := m[2]
	if u := unknownField().FindStringSubmatch(msg); u != nil {
		section := sectionOfType[u[2]]
		key := u[1]
		if section != "" {
			key = section + "." + key
		}
		return Problem{File: file, Line: line, Key: key,
			Msg: fmt.Sprintf("unknown key; valid keys here are %s (check the spelling, or remove it)", strings.Join(knownKeys(section), ", "))}
	}
	if c := cannotUnmarshal().FindStringSubmatch(msg); c != nil {
		key := keyAtLine(root, line)
		want := c[3]
		switch want {
		case "time.Duration":
			want = "a duration such as 30s, 5m or 3h"
		case "int":
			want = "a whole number"
		case "bool":
			want = "true or false"
		case "string":
			want = "a string"
		case "[]string":
			want = "a list of strings"
		default:
			if strings.HasPrefix(want, "config.") {
				want = "a mapping of keys (a section)"
			} else if strings.HasPrefix(want, "map[") {
				want = "a mapping of phase: duration"
			}
		}
		return Problem{File: file, Line: line, Key: key, Msg: fmt.Sprintf("wrong type: got %q, want %s", c[2], want)}
	}
	return Problem{File: file, Line: line, Key: keyAtLine(root, line), Msg: msg}
}

// knownKeys lists the keys of a section, from the yaml tags of the defaults.
func knownKeys(section string) []string {
	var keys []string
	walkKeys(Default(), func(k string) {
		if section == "" {
			if !strings.Contains(k, ".") {
				keys = append(keys, k)
			}
			return
		}
		if rest, ok := strings.CutPrefix(k, section+"."); ok && !strings.Contains(rest, ".") {
			keys = append(keys, rest)
		}
	})
	return keys
}

// walkKeys calls fn for every dotted key of the configuration, sections first.
func walkKeys(cfg Config, fn func(string)) {
	var n yaml.Node
	if err := n.Encode(cfg); err != nil {
		return
	}
	var walk func(prefix string, n *yaml.Node)
	walk = func(prefix string, n *yaml.Node) {
		if n.Kind != yaml.MappingNode {
			return
		}
		for i := 0; i+1 < len(n.Content); i += 2 {
			k := n.Content[i].Value
			if prefix != "" {
				k = prefix + "." + k
			}
			fn(k)
			if prefix == "" {
				walk(k, n.Content[i+1])
			}
		}
	}
	walk("", &n)
}

// keyAtLine finds the dotted key whose key or value sits on line.
func keyAtLine(root *yaml.Node, line int) string {
	found := ""
	var walk func(prefix string, n *yaml.Node)
	walk = func(prefix string, n *yaml.Node) {
		switch n.Kind {
		case yaml.DocumentNode:
			for _, c := range n.Content {
				walk(prefix, c)
			}
		case yaml.MappingNode:
			for i := 0; i+1 < len(n.Content); i += 2 {
				k := n.Content[i].Value
				if prefix != "" {
					k = prefix + "." + k
				}
				if n.Content[i].Line == line || n.Content[i+1].Line == line {
					found = k
				}
				walk(k, n.Content[i+1])
			}
		case yaml.SequenceNode:
			for _, c := range n.Content {
				if c.Line == line && found == "" {
					found = prefix
				}
			}
		}
	}
	walk("", root)
	return found
}

// lineOfKey returns the line of a dotted key in the file, 0 if absent.
func lineOfKey(root *yaml.Node, key string) int {
	n := root
	if n.Kind == yaml.DocumentNode && len(n.Content) > 0 {
		n = n.Content[0]
	}
	parts := strings.Split(key, ".")
	line := 0
	for _, p := range parts {
		if n == nil || n.Kind != yaml.MappingNode {
			return line
		}
		var next *yaml.Node
		for i := 0; i+1 < len(n.Content); i += 2 {
			if n.Content[i].Value == p {
				line = n.Content[i].Line
				next = n.Content[i+1]
				break
			}
		}
		if next == nil {
			return line
		}
		n = next
	}
	return line
}

// Validate checks values that decode fine but make no sense. file names the
// source in messages; values set by flags are reported without a line.
func (c *Config) Validate(file string) error {
	return c.validate(file, nil)
}

func (c *Config) validate(file string, root *yaml.Node) error {
	var ps Problems
	add := func(key, format string, args ...any) {
		p := Problem{File: file, Key: key, Msg: fmt.Sprintf(format, args...)}
		if root != nil {
			p.Line = lineOfKey(root, key)
		}
		ps = append(ps, p)
	}
	absPath := func(key, v string) {
		if v == "" {
			add(key, "must not be empty; set an absolute path")
		} else if !filepath.IsAbs(v) {
			add(key, "%q is not an absolute path; write it from / (patchd runs with working directory /)", v)
		}
	}
	absPath("paths.hooks", c.Paths.Hooks)
	absPath("paths.state", c.Paths.State)
	absPath("paths.agent_data", c.Paths.AgentData)
	absPath("paths.agent_logs", c.Paths.AgentLogs)
	absPath("control.socket", c.Control.Socket)

	if c.Web.ListenAddress != "" {
		if _, port, err := net.SplitHostPort(c.Web.ListenAddress); err != nil {
			add("web.listen_address", "%q is not host:port (%v); write e.g. :10795 or 127.0.0.1:10795, or empty to serve no metrics", c.Web.ListenAddress, err)
		} else if n, err := strconv.Atoi(port); err != nil || n < 0 || n > 65535 {
			add("web.listen_address", "port %q is not a number from 0 to 65535", port)
		}
	}
	if c.Web.ConfigFile != "" && !filepath.IsAbs(c.Web.ConfigFile) {
		add("web.config_file", "%q is not an absolute path", c.Web.ConfigFile)
	}
	if !slices.Contains([]string{"debug", "info", "warn", "error"}, c.Log.Level) {
		add("log.level", "%q is not a level; use debug, info, warn or error", c.Log.Level)
	}
	if !slices.Contains([]string{"logfmt", "json"}, c.Log.Format) {
		add("log.format", "%q is not a format; use logfmt or json", c.Log.Format)
	}
	positive := func(key string, d time.Duration) {
		if d <= 0 {
			add(key, "must be a positive duration such as 30s or 5m, got %s", d)
		}
	}
	positive("hooks.timeout", c.Hooks.Timeout)
	positive("hooks.kill_grace", c.Hooks.KillGrace)
	for phase, d := range c.Hooks.PhaseTimeouts {
		if !slices.Contains(Phases, phase) {
			add("hooks.phase_timeouts", "unknown phase %q; phases are %s", phase, strings.Join(Phases, ", "))
		} else {
			positive("hooks.phase_timeouts."+phase, d)
		}
	}
	if c.Hooks.PostPatchRetries < 0 {
		add("hooks.post_patch_retries", "must be 0 or more, got %d", c.Hooks.PostPatchRetries)
	}
	positive("hooks.post_patch_retry_backoff", c.Hooks.PostPatchRetryBackoff)
	positive("cycle.failsafe_age", c.Cycle.FailsafeAge)
	for _, p := range c.Cycle.ExtraDocuments {
		if _, err := path.Match(p, ""); err != nil || p == "" {
			add("cycle.extra_documents", "%q is not a valid document name pattern (path.Match syntax: *, ?, [a-z])", p)
		}
	}
	if c.Cycle.LedgerMaxEntries < 1 {
		add("cycle.ledger_max_entries", "must be at least 1, got %d", c.Cycle.LedgerMaxEntries)
	}
	if len(c.AgentLog.Files) == 0 {
		add("agent_log.files", "must name at least one file, e.g. [amazon-ssm-agent.log, errors.log]")
	}
	for _, f := range c.AgentLog.Files {
		if f == "" || strings.ContainsRune(f, '/') {
			add("agent_log.files", "%q must be a plain file name inside paths.agent_logs", f)
		}
	}
	positive("agent_log.rotation_grace", c.AgentLog.RotationGrace)
	switch c.AgentLog.Source {
	case "files", "journal":
	default:
		add("agent_log.source", "%q is not a log source; use files (the agent's log files) or journal (the systemd journal)", c.AgentLog.Source)
	}
	if c.AgentLog.Source == "journal" && (len(c.AgentLog.Journalctl) == 0 || strings.TrimSpace(c.AgentLog.Journalctl[0]) == "") {
		add("agent_log.journalctl", "must name the journalctl command when agent_log.source is journal, e.g. [journalctl, --unit=amazon-ssm-agent.service]")
	}
	if c.IMDS.Endpoint != "" && !strings.HasPrefix(c.IMDS.Endpoint, "http://") && !strings.HasPrefix(c.IMDS.Endpoint, "https://") {
		add("imds.endpoint", "%q must start with http:// (e.g. http://169.254.169.254), or be empty for the default", c.IMDS.Endpoint)
	}
	if c.IMDS.PollInterval < time.Second {
		add("imds.poll_interval", "must be at least 1s, got %s", c.IMDS.PollInterval)
	}
	positive("imds.timeout", c.IMDS.Timeout)
	if !validService(c.Agent.Service) {
		add("agent.service", "%q is not a service manager; use auto, systemd, systemd:<unit>, snap, upstart, windows or command", c.Agent.Service)
	}
	if c.Agent.Service == "command" && strings.TrimSpace(c.Agent.RestartCommand) == "" {
		add("agent.restart_command", "must be set when agent.service is command")
	}
	positive("agent.max_defer", c.Agent.MaxDefer)
	if c.Agent.MaxRestartsPerHour < 1 {
		add("agent.max_restarts_per_hour", "must be at least 1, got %d (set agent.restart: false to turn restarts off)", c.Agent.MaxRestartsPerHour)
	}
	positive("agent.restart_check_timeout", c.Agent.RestartCheckTimeout)
	if c.HostState.Interval < time.Minute {
		add("host_state.interval", "must be at least 1m, got %s", c.HostState.Interval)
	}
	positive("host_state.command_timeout", c.HostState.CommandTimeout)
	absPath("host_state.reboot_required_file", c.HostState.RebootRequiredFile)
	absPath("host_state.patch_configuration_dir", c.HostState.PatchConfigurationDir)
	c.validateFleet(add)
	if len(ps) == 0 {
		return nil
	}
	slices.SortStableFunc(ps, func(a, b Problem) int { return a.Line - b.Line })
	return ps
}

func validService(s string) bool {
	switch s {
	case "auto", "systemd", "snap", "upstart", "windows", "command":
		return true
	}
	unit, ok := strings.CutPrefix(s, "systemd:")
	return ok && unit != "" && !strings.ContainsAny(unit, " /")
}
