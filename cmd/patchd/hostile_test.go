package main

// Hostile and broken input at the binary's edges: files of the wrong kind
// where patchd reads, endless sources, names that try to forge output.

import (
	"bytes"
	"context"
	"errors"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// runPatchdWithin runs patchd and fails the test if it has not exited
// within d: the hostile inputs here used to block it for good.
func runPatchdWithin(t *testing.T, d time.Duration, args ...string) (int, string, string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), d)
	defer cancel()
	cmd := exec.CommandContext(ctx, patchdBin, args...)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	if ctx.Err() != nil {
		t.Fatalf("patchd %s still running after %v\nstderr: %s", strings.Join(args, " "), d, errb.String())
	}
	code := 0
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatalf("patchd %s: %v", strings.Join(args, " "), err)
	}
	return code, out.String(), errb.String()
}

func TestConfigFileOfTheWrongKindIsRefused(t *testing.T) {
	tr := newTestTree(t)
	fifo := filepath.Join(tr.Root, "fifo.yaml")
	if err := syscall.Mkfifo(fifo, 0o644); err != nil {
		t.Fatal(err)
	}
	zero := filepath.Join(tr.Root, "zero.yaml")
	if err := os.Symlink("/dev/zero", zero); err != nil {
		t.Fatal(err)
	}
	for _, file := range []string{fifo, zero} {
		for _, cmd := range []string{"check", "run"} {
			bad := tr
			bad.Config = file
			args := append([]string{cmd}, bad.flags()...)
			code, _, errOut := runPatchdWithin(t, 60*time.Second, args...)
			if code == 0 || !strings.Contains(errOut, file) || !strings.Contains(errOut, "not a regular file") {
				t.Errorf("patchd %s with config %s: code %d, stderr %q; want a failure naming the file", cmd, file, code, errOut)
			}
		}
	}
}

func TestReloadOfAnEndlessConfigIsRejected(t *testing.T) {
	tr := newTestTree(t)
	addr := freePort(t)
	p := startDaemon(t, tr, "--web.listen-address="+addr)
	if err := os.Remove(tr.Config); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("/dev/zero", tr.Config); err != nil {
		t.Fatal(err)
	}
	if err := p.cmd.Process.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	eventually(t, 30*time.Second, "reload rejected", func() bool {
		return strings.Contains(httpGet(t, http.DefaultClient, "http://"+addr+"/metrics", 200), "patchd_config_last_reload_successful 0")
	})
	if !strings.Contains(p.stderr.String(), "not a regular file") {
		t.Fatalf("no log line says why the reload was rejected:\n%s", p.stderr.String())
	}
}
