package config

import (
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/alecthomas/kingpin/v2"
)

func TestParseValid(t *testing.T) {
	for _, tc := range []struct {
		name  string
		yaml  string
		check func(t *testing.T, c Config)
	}{
		{"empty file keeps defaults", "", func(t *testing.T, c Config) {
			if c.Hooks.Timeout != 5*time.Minute || c.Paths.Hooks != "/etc/patchd/hooks.d" {
				t.Fatalf("defaults changed: %+v", c)
			}
		}},
		{"comments only", "# nothing\n", func(t *testing.T, c Config) {
			if c.Web.ListenAddress != DefaultListenAddress {
				t.Fatal(c.Web.ListenAddress)
			}
		}},
		{"durations, lists, maps", `
hooks:
  timeout: 90s
  phase_timeouts:
    post-patch: 10m
cycle:
  extra_documents: ["Custom-Patch*", "MyDoc"]
agent:
  restart: false
  service: systemd:amazon-ssm-agent.service
`, func(t *testing.T, c Config) {
			if c.Hooks.Timeout != 90*time.Second || c.HookTimeout("post-patch") != 10*time.Minute || c.HookTimeout("pre-patch") != 90*time.Second {
				t.Fatalf("timeouts: %v %v", c.Hooks.Timeout, c.Hooks.PhaseTimeouts)
			}
			if len(c.Cycle.ExtraDocuments) != 2 || c.Agent.Restart || c.Agent.Service != "systemd:amazon-ssm-agent.service" {
				t.Fatalf("%+v %+v", c.Cycle, c.Agent)
			}
			// Keys not in the file keep their defaults.
			if c.Agent.MaxRestartsPerHour != 3 {
				t.Fatal(c.Agent.MaxRestartsPerHour)
			}
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := Default()
			if err := Parse("patchd.yaml", []byte(tc.yaml), &c); err != nil {
				t.Fatal(err)
			}
			tc.check(t, c)
		})
	}
}

func TestParseInvalid(t *testing.T) {
	for _, tc := range []struct {
		name string
		yaml string
		want []string // each must appear, in this order, one per problem
	}{
		{"unknown top-level key", "pathz:\n  hooks: /x\n",
			[]string{"patchd.yaml:1: pathz: unknown key; valid keys here are paths, control, web, log, hooks, cycle, agent_log, imds, agent, host_state"}},
		{"unknown nested key", "hooks:\n  timeout: 5m\n  timout: 5m\n",
			[]string{"patchd.yaml:3: hooks.timout: unknown key; valid keys here are timeout, kill_grace"}},
		{"bad duration", "imds:\n  poll_interval: soon\n",
			[]string{`patchd.yaml:2: imds.poll_interval: wrong type: got "soon", want a duration such as 30s, 5m or 3h`}},
		{"bad int", "agent:\n  max_restarts_per_hour: many\n",
			[]string{`patchd.yaml:2: agent.max_restarts_per_hour: wrong type: got "many", want a whole number`}},
		{"bad bool", "agent:\n  restart: maybe\n",
			[]string{`patchd.yaml:2: agent.restart: wrong type: got "maybe", want true or false`}},
		{"scalar for a section", "hooks: 5m\n",
			[]string{`patchd.yaml:1: hooks: wrong type: got "5m", want a mapping of keys (a section)`}},
		{"syntax error", "hooks:\n  timeout: [\n",
			[]string{"patchd.yaml:", "not valid YAML"}},
		{"several problems, in line order", "log:\n  level: loud\n  format: xml\nhooks:\n  timeout: -1s\n",
			[]string{
				`patchd.yaml:2: log.level: "loud" is not a level; use debug, info, warn or error`,
				`patchd.yaml:3: log.format: "xml" is not a format; use logfmt or json`,
				`patchd.yaml:5: hooks.timeout: must be a positive duration`,
			}},
		{"relative path", "paths:\n  state: var/lib/patchd\n",
			[]string{`patchd.yaml:2: paths.state: "var/lib/patchd" is not an absolute path`}},
		{"unknown phase", "hooks:\n  phase_timeouts:\n    during: 1m\n",
			[]string{`patchd.yaml:2: hooks.phase_timeouts: unknown phase "during"`}},
		{"bad listen address", "web:\n  listen_address: localhost\n",
			[]string{`patchd.yaml:2: web.listen_address: "localhost" is not host:port`}},
		{"command service without command", "agent:\n  service: command\n",
			[]string{"agent.restart_command: must be set when agent.service is command"}},
		{"bad document pattern", "cycle:\n  extra_documents: ['[']\n",
			[]string{`patchd.yaml:2: cycle.extra_documents: "[" is not a valid document name pattern`}},
		{"imds endpoint without scheme", "imds:\n  endpoint: 127.0.0.1:1338\n",
			[]string{`imds.endpoint: "127.0.0.1:1338" must start with http://`}},
		{"agent log file with a slash", "agent_log:\n  files: [../x.log]\n",
			[]string{`agent_log.files: "../x.log" must be a plain file name`}},
		{"unknown agent log source", "agent_log:\n  source: syslog\n",
			[]string{`patchd.yaml:2: agent_log.source: "syslog" is not a log source; use files`}},
		{"journal source without journalctl", "agent_log:\n  source: journal\n  journalctl: []\n",
			[]string{`agent_log.journalctl: must name the journalctl command when agent_log.source is journal`}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := Default()
			err := Parse("patchd.yaml", []byte(tc.yaml), &c)
			if err == nil {
				t.Fatal("no error")
			}
			var ps Problems
			if !errors.As(err, &ps) {
				t.Fatalf("error is %T, want Problems", err)
			}
			msg := err.Error()
			pos := 0
			for _, w := range tc.want {
				i := strings.Index(msg[pos:], w)
				if i < 0 {
					t.Fatalf("error lacks %q (in order):\n%s", w, msg)
				}
				pos += i + len(w)
			}
		})
	}
}

func TestFlagsOverrideFileAndFileOverridesDefaults(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "patchd.yaml")
	if err := os.WriteFile(file, []byte("hooks:\n  timeout: 2m\nimds:\n  poll_interval: 30s\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	app := kingpin.New("t", "")
	f := AddFlags(app)
	if _, err := app.Parse([]string{"--config.file", file, "--imds.poll-interval=5s", "--agent-log.files=a.log,b.log", "--no-agent.restart"}); err != nil {
		t.Fatal(err)
	}
	c, err := f.Resolve()
	if err != nil {
		t.Fatal(err)
	}
	if c.Hooks.Timeout != 2*time.Minute {
		t.Errorf("file value lost: hooks.timeout = %v", c.Hooks.Timeout)
	}
	if c.IMDS.PollInterval != 5*time.Second {
		t.Errorf("flag did not win: imds.poll_interval = %v", c.IMDS.PollInterval)
	}
	if strings.Join(c.AgentLog.Files, ",") != "a.log,b.log" || c.Agent.Restart {
		t.Errorf("flags: files %v restart %v", c.AgentLog.Files, c.Agent.Restart)
	}
	if c.Paths.State != "/var/lib/patchd" {
		t.Errorf("default lost: %v", c.Paths.State)
	}
}

func TestFlagValueIsValidated(t *testing.T) {
	app := kingpin.New("t", "")
	f := AddFlags(app)
	if _, err := app.Parse([]string{"--config.file", filepath.Join(t.TempDir(), "none.yaml"), "--log.level=loud"}); err != nil {
		t.Fatal(err)
	}
	_, err := f.Resolve()
	if err == nil || !strings.Contains(err.Error(), "none.yaml: cannot read the configuration") {
		t.Fatalf("named missing file: %v", err)
	}

	app = kingpin.New("t", "")
	f = AddFlags(app)
	if _, err := app.Parse([]string{"--log.level=loud", "--path.hooks=relative"}); err != nil {
		t.Fatal(err)
	}
	f.File = filepath.Join(t.TempDir(), "absent-default.yaml") // default file absent: tolerated
	_, err = f.Resolve()
	if err == nil || !strings.Contains(err.Error(), `(with command-line flags): log.level: "loud"`) || !strings.Contains(err.Error(), "paths.hooks") {
		t.Fatalf("bad flag values not reported: %v", err)
	}
}

func TestPhaseTimeoutsFlag(t *testing.T) {
	file := filepath.Join(t.TempDir(), "patchd.yaml")
	if err := os.WriteFile(file, []byte("hooks:\n  phase_timeouts:\n    post-patch: 2h\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	resolve := func(args ...string) (Config, error) {
		t.Helper()
		app := kingpin.New("t", "")
		f := AddFlags(app)
		if _, err := app.Parse(append([]string{"--config.file=" + file}, args...)); err != nil {
			t.Fatal(err)
		}
		return f.Resolve()
	}

	// Without the flag the file's map stands.
	c, err := resolve()
	if err != nil || len(c.Hooks.PhaseTimeouts) != 1 || c.Hooks.PhaseTimeouts["post-patch"] != 2*time.Hour {
		t.Fatalf("file only: %v, %v", c.Hooks.PhaseTimeouts, err)
	}
	// The flag replaces the file's map, as a list flag replaces a list.
	c, err = resolve("--hooks.phase-timeouts=pre-patch=30m, pre-reboot=90s")
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]time.Duration{"pre-patch": 30 * time.Minute, "pre-reboot": 90 * time.Second}
	if !reflect.DeepEqual(c.Hooks.PhaseTimeouts, want) {
		t.Fatalf("flag: %v, want %v", c.Hooks.PhaseTimeouts, want)
	}
	if got := c.HookTimeout("pre-patch"); got != 30*time.Minute {
		t.Fatalf("HookTimeout(pre-patch) = %v", got)
	}
	// An empty flag clears them.
	if c, err = resolve("--hooks.phase-timeouts="); err != nil || len(c.Hooks.PhaseTimeouts) != 0 {
		t.Fatalf("empty flag: %v, %v", c.Hooks.PhaseTimeouts, err)
	}
	// Bad values are errors that name the flag and say how to write it.
	for arg, msg := range map[string]string{
		"--hooks.phase-timeouts=pre-patch":        `--hooks.phase-timeouts=pre-patch: "pre-patch" is not PHASE=DURATION`,
		"--hooks.phase-timeouts=pre-patch=soon":   "the duration is not like 30s",
		"--hooks.phase-timeouts=during=5m":        `hooks.phase_timeouts: unknown phase "during"`,
		"--hooks.phase-timeouts=post-patch=-1m":   "hooks.phase_timeouts.post-patch",
		"--hooks.phase-timeouts=post-patch=1m,x=": "x=",
	} {
		if _, err := resolve(arg); err == nil || !strings.Contains(err.Error(), msg) {
			t.Errorf("%s: error %v, want it to contain %q", arg, err, msg)
		}
	}
}

func TestEveryKeyHasAFlag(t *testing.T) {
	app := kingpin.New("t", "")
	AddFlags(app)
	walkKeys(Default(), func(k string) {
		if !strings.Contains(k, ".") {
			return // sections
		}
		flag := strings.ReplaceAll(k, "_", "-")
		flag = strings.Replace(flag, "paths.", "path.", 1)
		flag = strings.Replace(flag, "web.config-file", "web.config.file", 1)
		if app.GetFlag(flag) == nil {
			t.Errorf("key %s has no flag --%s", k, flag)
		}
	})
}
