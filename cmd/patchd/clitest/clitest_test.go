// Package clitest checks the CLI build of patchd (-tags patchd_cli,
// installed as /usr/bin/patchd) against the full one (the default build,
// installed as /usr/libexec/patchd/patchd-daemon): the CLI links none of
// the daemon's heavy packages, offers exactly the same commands, flags and
// help, and hands the commands that need those packages to the full binary
// with its own argv and environment (docs/design.md, "Two binaries").
package clitest

import (
	"bytes"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/patchd/patchd/agent/testbin"
)

const pkg = "github.com/patchd/patchd/cmd/patchd"

// cliBin is the CLI build and daemonBin the full one, beside it as
// patchd-daemon, the way a build tree has them.
var cliBin, daemonBin string

func TestMain(m *testing.M) {
	testbin.Main(m,
		testbin.Build{Name: "patchd", Pkg: pkg, Flags: []string{"-tags", "patchd_cli"}, Out: &cliBin},
		testbin.Build{Name: "patchd-daemon", Pkg: pkg, Out: &daemonBin})
}

// heavy are the module paths the CLI must not link: each costs start-up
// at every command (their package inits, their page faults).
var heavy = []string{
	"github.com/prometheus/client_golang",
	"github.com/prometheus/exporter-toolkit",
	"github.com/aws/aws-sdk-go-v2",
	"github.com/kardianos/service",
	// The control server's; the CLI's client speaks HTTP/1.0 itself
	// (agent/controlclient): net/http and crypto/tls were a third of
	// `patchd version`'s page faults.
	"net/http",
	"crypto/tls",
}

func deps(t *testing.T, tags ...string) []string {
	t.Helper()
	args := append([]string{"list", "-deps"}, tags...)
	out, err := exec.Command("go", append(args, pkg)...).Output()
	if err != nil {
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			t.Fatalf("go list: %v\n%s", err, ee.Stderr)
		}
		t.Fatalf("go list: %v", err)
	}
	return strings.Fields(string(out))
}

func linked(pkgs []string, module string) []string {
	var out []string
	for _, p := range pkgs {
		if p == module || strings.HasPrefix(p, module+"/") {
			out = append(out, p)
		}
	}
	return out
}

// TestCLILinksNoDaemonPackages: a package of the CLI that imports one of
// them, directly or not, fails here, with the chain to look at.
func TestCLILinksNoDaemonPackages(t *testing.T) {
	cli, full := deps(t, "-tags", "patchd_cli"), deps(t)
	for _, m := range heavy {
		if got := linked(cli, m); len(got) > 0 {
			t.Errorf("the CLI build links %v; see which package imports it with: go list -deps -tags patchd_cli -f '{{.ImportPath}}: {{.Imports}}' ./cmd/patchd | grep %s", got, m)
		}
		// The full binary does: else this test would pass for a wrong
		// reason (a module renamed, go list answering something else).
		if len(linked(full, m)) == 0 {
			t.Errorf("the full build does not link %s: update the list of heavy modules", m)
		}
	}
}

// result is one run of a binary.
type result struct {
	code           int
	stdout, stderr string
}

func runBin(t *testing.T, bin string, stdin string, env []string, args ...string) result {
	t.Helper()
	cmd := exec.Command(bin, args...)
	cmd.Env = append(os.Environ(), env...)
	cmd.Stdin = strings.NewReader(stdin)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	var ee *exec.ExitError
	if err != nil && !errors.As(err, &ee) {
		t.Fatalf("%s %v: %v", bin, args, err)
	}
	return result{cmd.ProcessState.ExitCode(), stdout.String(), stderr.String()}
}

// commandLine is a command in --help-long: its words before the first
// argument or flag placeholder.
var commandLine = regexp.MustCompile(`^([a-z][a-z-]*(?: [a-z][a-z-]*)*)(?: [\[<].*)?$`)

// commands lists every command and command group of the app, from the
// full binary's --help-long.
func commands(t *testing.T) [][]string {
	t.Helper()
	r := runBin(t, daemonBin, "", nil, "--help-long")
	if r.code != 0 {
		t.Fatalf("--help-long: exit %d\n%s", r.code, r.stderr)
	}
	i := strings.LastIndex(r.stdout, "\nCommands:\n")
	if i < 0 {
		t.Fatalf("no command list in --help-long:\n%s", r.stdout)
	}
	seen := map[string]bool{}
	var out [][]string
	for _, line := range strings.Split(r.stdout[i:], "\n") {
		m := commandLine.FindStringSubmatch(line)
		if m == nil {
			continue
		}
		words := strings.Fields(m[1])
		for n := 1; n <= len(words); n++ {
			if k := strings.Join(words[:n], " "); !seen[k] {
				seen[k] = true
				out = append(out, words[:n])
			}
		}
	}
	for _, want := range []string{"run", "version", "hooks run", "service install", "status"} {
		if !seen[want] {
			t.Fatalf("command %q not found in --help-long; the parsing is out of date:\n%s", want, r.stdout[i:])
		}
	}
	return out
}

// TestSameHelp: both binaries print the same help for the app and for
// every command, so that the two builds cannot drift apart.
func TestSameHelp(t *testing.T) {
	cases := [][]string{{"--help"}, {"--help-long"}, {"help"}}
	for _, c := range commands(t) {
		cases = append(cases, append(slices.Clone(c), "--help"), append([]string{"help"}, c...))
	}
	for _, args := range cases {
		cli, full := runBin(t, cliBin, "", nil, args...), runBin(t, daemonBin, "", nil, args...)
		if cli != full {
			t.Errorf("patchd %s differs between the CLI and the full binary:\nCLI:  exit %d\n%s%s\nfull: exit %d\n%s%s",
				strings.Join(args, " "), cli.code, cli.stdout, cli.stderr, full.code, full.stdout, full.stderr)
		}
	}
	if t.Failed() {
		return
	}
	t.Logf("%d help pages compared", len(cases))
}

// fakeDaemon is a stand-in for the full binary that prints what it was
// given.
const fakeDaemon = "#!/bin/sh\necho \"fake daemon: $*\"\necho \"mark: $PATCHD_CLITEST_MARK\"\nexit 7\n"

// copyCLI puts a copy of the CLI in a fresh directory, alone.
func copyCLI(t *testing.T, from string) string {
	t.Helper()
	data, err := os.ReadFile(from)
	if err != nil {
		t.Fatal(err)
	}
	bin := filepath.Join(t.TempDir(), "patchd")
	if err := os.WriteFile(bin, data, 0o755); err != nil {
		t.Fatal(err)
	}
	return bin
}

// delegated are command lines the CLI hands to the full binary.
var delegated = [][]string{
	{"run", "--config.file=/nonexistent/patchd.yaml"},
	{"check", "--path.hooks=/x y"},
	{"service", "status"},
	{"service", "install"},
	{"agent", "status", "-o", "json"},
	{"agent", "restart", "--detail", "why not"},
	{"agent-log", "classify", "-"},
}

// TestDelegationExecsWithSameArgsAndEnv: each daemon command replaces the
// CLI with patchd-daemon beside it, arguments and environment unchanged;
// the CLI's own commands do not.
func TestDelegationExecsWithSameArgsAndEnv(t *testing.T) {
	bin := copyCLI(t, cliBin)
	if err := os.WriteFile(filepath.Join(filepath.Dir(bin), "patchd-daemon"), []byte(fakeDaemon), 0o755); err != nil {
		t.Fatal(err)
	}
	env := []string{"PATCHD_CLITEST_MARK=kept"}
	for _, args := range delegated {
		r := runBin(t, bin, "", env, args...)
		want := "fake daemon: " + strings.Join(args, " ") + "\nmark: kept\n"
		if r.code != 7 || r.stdout != want || r.stderr != "" {
			t.Errorf("patchd %s: exit %d, stdout %q, stderr %q; want the fake daemon's exit 7 and %q",
				strings.Join(args, " "), r.code, r.stdout, r.stderr, want)
		}
	}
	for _, args := range [][]string{{"version"}, {"hooks", "list", "--path.hooks=" + t.TempDir()}, {"--help"}} {
		if r := runBin(t, bin, "", env, args...); strings.Contains(r.stdout, "fake daemon") {
			t.Errorf("patchd %s ran the full binary; it must run in the CLI", strings.Join(args, " "))
		}
	}
	// A command line that does not parse fails in the CLI, as the full
	// binary would have, without starting it.
	if r := runBin(t, bin, "", env, "run", "--no-such-flag"); r.code != 2 || strings.Contains(r.stdout, "fake daemon") {
		t.Errorf("run --no-such-flag: exit %d, %q %q; want the usage error, exit 2", r.code, r.stdout, r.stderr)
	}
}

// TestDelegatedCommandsMatchTheFullBinary: through the CLI, the daemon's
// commands give the full binary's output and exit code.
func TestDelegatedCommandsMatchTheFullBinary(t *testing.T) {
	dir := t.TempDir()
	hooksDir := filepath.Join(dir, "hooks.d")
	for _, p := range []string{"pre-patch", "pre-reboot", "post-patch"} {
		if err := os.MkdirAll(filepath.Join(hooksDir, p), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	write := func(name, body string, mode os.FileMode) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(body), mode); err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(p, mode); err != nil {
			t.Fatal(err)
		}
		return p
	}
	good := write("good.yaml", "imds:\n  endpoint: http://127.0.0.1:9\n", 0o644)
	bad := write("bad.yaml", "hooks: [\n", 0o644)
	unsafe := write("hooks.d/pre-patch/10-writable", "#!/bin/sh\nexit 0\n", 0o757)
	cases := []struct {
		args  []string
		stdin string
		code  int
	}{
		{args: []string{"check", "--config.file=" + good, "--path.hooks=" + filepath.Join(dir, "missing")}, code: 1},
		{args: []string{"check", "--config.file=" + bad, "--path.hooks=" + hooksDir}, code: 2},
		{args: []string{"check", "--config.file=" + good, "--path.hooks=" + hooksDir}, code: 1}, // the writable hook
		{args: []string{"run", "--config.file=" + bad}, code: 2},
		{args: []string{"agent-log", "classify"}, stdin: "2026-01-01 10:00:00 INFO [amazon-ssm-agent] amazon-ssm-agent - v3.3.0.0\n", code: 0},
	}
	for _, c := range cases {
		cli, full := runBin(t, cliBin, c.stdin, nil, c.args...), runBin(t, daemonBin, c.stdin, nil, c.args...)
		if cli != full {
			t.Errorf("patchd %s: CLI exit %d %q %q, full exit %d %q %q", strings.Join(c.args, " "),
				cli.code, cli.stdout, cli.stderr, full.code, full.stdout, full.stderr)
		}
		if full.code != c.code {
			t.Errorf("patchd %s: exit %d, want %d (stdout %q, stderr %q)", strings.Join(c.args, " "), full.code, c.code, full.stdout, full.stderr)
		}
	}
	if err := os.Remove(unsafe); err != nil {
		t.Fatal(err)
	}
	args := []string{"check", "--config.file=" + good, "--path.hooks=" + hooksDir}
	if cli, full := runBin(t, cliBin, "", nil, args...), runBin(t, daemonBin, "", nil, args...); cli != full || cli.code != 0 {
		t.Errorf("patchd check on a fine tree: CLI %+v, full %+v; want both exit 0 alike", cli, full)
	}
}

// TestDaemonPath: without patchd-daemon beside it, the CLI runs the one at
// main.daemonPath (set with -X, as the Makefile does for the packages),
// and says where it looked when there is none.
func TestDaemonPath(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the CLI once more")
	}
	libexec := filepath.Join(t.TempDir(), "libexec", "patchd-daemon")
	bin := filepath.Join(t.TempDir(), "patchd")
	build := exec.Command("go", "build", "-tags", "patchd_cli", "-ldflags", "-X main.daemonPath="+libexec, "-o", bin, pkg)
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	r := runBin(t, bin, "", nil, "check")
	beside := filepath.Join(filepath.Dir(bin), "patchd-daemon")
	if r.code != 1 || !strings.Contains(r.stderr, libexec) || !strings.Contains(r.stderr, beside) ||
		!strings.Contains(r.stderr, "install the patchd package again") {
		t.Errorf("without a full binary: exit %d, stderr %q; want exit 1 naming %s and %s", r.code, r.stderr, libexec, beside)
	}
	if err := os.MkdirAll(filepath.Dir(libexec), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(libexec, []byte(fakeDaemon), 0o755); err != nil {
		t.Fatal(err)
	}
	if r := runBin(t, bin, "", nil, "check"); r.code != 7 || !strings.HasPrefix(r.stdout, "fake daemon: check\n") {
		t.Errorf("with %s: exit %d, stdout %q, stderr %q; want the fake daemon", libexec, r.code, r.stdout, r.stderr)
	}
}
