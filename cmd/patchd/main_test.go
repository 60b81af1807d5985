package main

// Shared by every end-to-end test in this package: TestMain builds the real
// patchd binary once; tests start it with --path.* pointed at temp trees.
// Add helpers here rather than a second TestMain.

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// patchdBin is the binary under test, built by TestMain.
var patchdBin string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "patchd-bin-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	patchdBin = filepath.Join(dir, "patchd")
	build := exec.Command("go", "build", "-race", "-o", patchdBin, ".")
	build.Stdout, build.Stderr = os.Stderr, os.Stderr
	if err := build.Run(); err != nil {
		fmt.Fprintln(os.Stderr, "building patchd:", err)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// testTree is a temp host layout for one patchd.
type testTree struct {
	Root, Config, Hooks, State, AgentData, AgentLogs, Socket string
}

func newTestTree(t *testing.T) testTree {
	t.Helper()
	root := t.TempDir()
	// Unix socket paths are limited to ~108 bytes; t.TempDir() can be long.
	sockDir, err := os.MkdirTemp("", "pd")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(sockDir) })
	tr := testTree{
		Root:      root,
		Config:    filepath.Join(root, "patchd.yaml"),
		Hooks:     filepath.Join(root, "hooks.d"),
		State:     filepath.Join(root, "state"),
		AgentData: filepath.Join(root, "ssm-data"),
		AgentLogs: filepath.Join(root, "ssm-logs"),
		Socket:    filepath.Join(sockDir, "patchd.sock"),
	}
	for _, p := range []string{"pre-patch", "pre-reboot", "post-patch"} {
		if err := os.MkdirAll(filepath.Join(tr.Hooks, p), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	// The hooks tree must not be group/world-writable (t.TempDir is 0700).
	if err := os.WriteFile(tr.Config, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	return tr
}

// flags returns the --path.* flags (and config file) for the tree.
func (tr testTree) flags() []string {
	return []string{
		"--config.file=" + tr.Config,
		"--path.hooks=" + tr.Hooks,
		"--path.state=" + tr.State,
		"--path.agent-data=" + tr.AgentData,
		"--path.agent-logs=" + tr.AgentLogs,
		"--control.socket=" + tr.Socket,
	}
}

// runPatchd runs a patchd subcommand to completion and returns its exit code,
// stdout and stderr.
func runPatchd(t *testing.T, args ...string) (int, string, string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, patchdBin, args...)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	code := 0
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatalf("patchd %s: %v", strings.Join(args, " "), err)
	}
	return code, out.String(), errb.String()
}

// freePort returns a loopback address with a port that was free a moment ago.
func freePort(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	return addr
}

// eventually polls cond on a ticker until it holds or the deadline passes.
// For external processes only; in-process code waits on events instead.
func eventually(t *testing.T, within time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.NewTimer(within)
	defer deadline.Stop()
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for !cond() {
		select {
		case <-deadline.C:
			t.Fatalf("timed out after %s waiting for %s", within, what)
		case <-tick.C:
		}
	}
}
