package systemtest

// An EC2-like host in a container: the patchd package installed, a stand-in
// amazon-ssm-agent.service, the simulated agent's command line to play the
// agent's state files and log, and hooks that record every run.

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/patchd/patchd/agent/ledger"
)

const (
	// instanceID is the agent's instance folder; it matches the IMDS mock's
	// default instance-id.
	instanceID = "i-1234567890abcdef0"
	// hookLog is where the recording hooks append, on the container's disk
	// so it survives the reboot.
	hookLog = "/var/log/patchd-e2e-hooks.log"
	// agentVersion is what the stand-in agent prints at start.
	agentVersion = "3.3.1142.0"
)

// agentUnit stands in for amazon-ssm-agent's unit (Restart=always and
// KillMode=process as the real one, docs/agent-formats.md, "Service and
// processes"): it logs the agent's start banner through the simulated
// agent, then idles.
const agentUnit = `[Unit]
Description=stand-in for amazon-ssm-agent (patchd system test)
After=network-online.target

[Service]
Type=simple
ExecStart=/bin/sh -c 'ssm-agent-sim --instance-id ` + instanceID + ` --log-dir /var/log/amazon/ssm log INFO "amazon-ssm-agent - v` + agentVersion + `"; exec sleep infinity'
KillMode=process
Restart=always
RestartSec=1

[Install]
WantedBy=multi-user.target
`

// recordHook appends one line per run with the PATCHD_* values the checks
// need. Quick and idempotent, as the hook contract asks.
const recordHook = `#!/bin/sh
echo "$PATCHD_PHASE cycle=$PATCHD_CYCLE_ID attempt=$PATCHD_ATTEMPT trigger=$PATCHD_TRIGGER result=$PATCHD_RESULT rebooted=$PATCHD_REBOOTED cmd=$PATCHD_COMMAND_ID op=$PATCHD_OPERATION" >> ` + hookLog + `
`

// tools are host-built static binaries copied into every host.
var tools struct {
	once sync.Once
	sim  string // ssm-agent-sim, "" when cmd/ssm-agent-sim does not exist yet
	tiny string // a tiny real .deb for the patch run to install
	err  error
}

func buildTools(t *testing.T) {
	t.Helper()
	tools.once.Do(func() {
		dir := filepath.Join(suite.build, "e2e", "tools")
		if err := os.MkdirAll(dir, 0o755); err != nil {
			tools.err = err
			return
		}
		if _, err := os.Stat(filepath.Join(suite.repo, "cmd/ssm-agent-sim")); err == nil {
			tools.sim = filepath.Join(dir, "ssm-agent-sim")
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
			defer cancel()
			cmd := exec.CommandContext(ctx, "go", "build", "-trimpath", "-o", tools.sim, "./cmd/ssm-agent-sim")
			cmd.Dir, cmd.Env = suite.repo, append(os.Environ(), "CGO_ENABLED=0")
			if out, err := cmd.CombinedOutput(); err != nil {
				tools.err = fmt.Errorf("building ssm-agent-sim: %w\n%s", err, out)
				return
			}
		}
		tools.tiny, tools.err = tinyDeb(dir)
	})
	if tools.err != nil {
		t.Fatal(tools.err)
	}
}

// tinyDeb builds a one-file Debian package, so that a patch run inside the
// container changes the package database for real and the ledger's diff has
// something true to show.
func tinyDeb(dir string) (string, error) {
	tree := filepath.Join(dir, "tiny")
	os.RemoveAll(tree)
	for path, body := range map[string]string{
		"DEBIAN/control": "Package: patchd-e2e-tiny\nVersion: 1.0-1\nArchitecture: all\n" +
			"Maintainer: patchd maintainers <patchd@users.noreply.github.com>\n" +
			"Description: patchd system test package\n A package the system test installs during a patch run.\n",
		"usr/share/doc/patchd-e2e-tiny/README": "Installed by patchd's system test.\n",
	} {
		p := filepath.Join(tree, path)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			return "", err
		}
		if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
			return "", err
		}
	}
	deb := filepath.Join(dir, "patchd-e2e-tiny_1.0-1_all.deb")
	if out, err := exec.Command("dpkg-deb", "--root-owner-group", "-b", tree, deb).CombinedOutput(); err != nil {
		return "", fmt.Errorf("dpkg-deb -b %s: %w\n%s", tree, err, out)
	}
	return deb, nil
}

// host is a booted container with patchd installed and the agent stand-in.
type host struct {
	*container
}

// newHost boots a fresh root, sets up the agent stand-in and its folders,
// installs the package, then applies config (YAML for
// /etc/patchd/patchd.yaml, "" keeps the packaged file) and restarts patchd
// on it, as an operator would.
func newHost(t *testing.T, name, config string) *host {
	t.Helper()
	buildTools(t)
	if tools.sim == "" {
		notYet(t, "cmd/ssm-agent-sim (the simulated agent) has not landed")
	}
	dir := newRoot(t)
	// The agent is on the image before the first boot, as on an AMI.
	wants := filepath.Join(dir, "etc/systemd/system/multi-user.target.wants")
	if err := os.MkdirAll(wants, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "etc/systemd/system/amazon-ssm-agent.service"), []byte(agentUnit), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("/etc/systemd/system/amazon-ssm-agent.service", filepath.Join(wants, "amazon-ssm-agent.service")); err != nil {
		t.Fatal(err)
	}
	sim, err := os.ReadFile(tools.sim)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "usr/local/bin/ssm-agent-sim"), sim, 0o755); err != nil {
		t.Fatal(err)
	}
	h := &host{boot(t, dir, name)}
	h.sim("init")
	waitActive(t, h.container, "amazon-ssm-agent.service")
	installDeb(t, h.container, suite.deb)
	for _, phase := range []string{"pre-patch", "pre-reboot", "post-patch"} {
		if err := os.WriteFile(filepath.Join(dir, "etc/patchd/hooks.d", phase, "10-record"), []byte(recordHook), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if config != "" {
		if err := os.WriteFile(filepath.Join(dir, "etc/patchd/patchd.yaml"), []byte(config), 0o644); err != nil {
			t.Fatal(err)
		}
		h.run("systemctl", "restart", "patchd.service")
	}
	waitActive(t, h.container, "patchd.service")
	if out, err := h.execOut("patchd", "check"); err != nil {
		t.Fatalf("patchd check on the test host: %v\n%s", err, out)
	}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("patchd journal:\n%s\nhooks:\n%s", h.journal("patchd.service"), h.hookLines())
		}
	})
	return h
}

// sim runs the simulated agent inside the container and returns its
// trimmed output (a document id for submit).
func (h *host) sim(args ...string) string {
	h.t.Helper()
	base := []string{"ssm-agent-sim", "--instance-id", instanceID, "--log-dir", "/var/log/amazon/ssm"}
	return strings.TrimSpace(h.run(append(base, args...)...))
}

// hookLines returns what the recording hooks wrote.
func (h *host) hookLines() []string {
	data, _ := os.ReadFile(filepath.Join(h.Dir, hookLog))
	var out []string
	for _, l := range strings.Split(string(data), "\n") {
		if l != "" {
			out = append(out, l)
		}
	}
	return out
}

// phaseRuns returns the recorded runs of one phase.
func (h *host) phaseRuns(phase string) []string {
	var out []string
	for _, l := range h.hookLines() {
		if strings.HasPrefix(l, phase+" ") {
			out = append(out, l)
		}
	}
	return out
}

// waitPhase waits until phase has run at least once.
func (h *host) waitPhase(phase string, limit time.Duration) {
	h.t.Helper()
	h.waitFor(limit, phase+" hook run", func() bool { return len(h.phaseRuns(phase)) > 0 })
}

// history returns the ledger as `patchd history -o json` prints it.
func (h *host) history() []ledger.Entry {
	h.t.Helper()
	out, err := h.execOut("patchd", "history", "-o", "json", "-n", "0")
	if err != nil {
		return nil
	}
	var entries []ledger.Entry
	for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
		var e ledger.Entry
		if json.Unmarshal([]byte(line), &e) == nil && e.CycleID != "" {
			entries = append(entries, e)
		}
	}
	return entries
}

// waitClosed waits until the ledger holds a cycle for the command and
// returns it.
func (h *host) waitClosed(commandID string, limit time.Duration) ledger.Entry {
	h.t.Helper()
	var found ledger.Entry
	h.waitFor(limit, "cycle of "+commandID+" closed in the ledger", func() bool {
		for _, e := range h.history() {
			if e.CommandID == commandID || e.DocumentID == commandID {
				found = e
				return true
			}
		}
		return false
	})
	return found
}

// ledgerPackage is one package of a ledger entry's change list.
type ledgerPackage = ledger.Package
