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
	"strconv"
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

// A phase directory linked into a world-writable, non-sticky directory is
// reported by `patchd check` even while it is empty.
func TestCheckRefusesSymlinkedPhaseDirInOpenDir(t *testing.T) {
	tr := newTestTree(t)
	open := filepath.Join(t.TempDir(), "open")
	target := filepath.Join(open, "post-patch")
	if err := os.MkdirAll(target, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(open, 0o777); err != nil {
		t.Fatal(err)
	}
	phase := filepath.Join(tr.Hooks, "post-patch")
	if err := os.Remove(phase); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(target, phase); err != nil {
		t.Fatal(err)
	}
	code, _, errOut := runPatchdWithin(t, 60*time.Second, append([]string{"check"}, tr.flags()...)...)
	want := "hooks of phase post-patch will not run: directory " + open + " is world-writable"
	if code != exitFailure || !strings.Contains(errOut, want) {
		t.Fatalf("check: code %d, stderr %q; want a failure saying %q", code, errOut, want)
	}
}

// With an invalid configuration file, `patchd check --path.hooks DIR`
// still checks DIR (not the default directory) and reports both.
func TestCheckUsesPathHooksWithInvalidConfig(t *testing.T) {
	tr := newTestTree(t)
	if err := os.WriteFile(tr.Config, []byte(testIMDSConfig+"log:\n  level: loud\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	bad := filepath.Join(tr.Hooks, "pre-patch", "10-open")
	if err := os.WriteFile(bad, []byte("#!/bin/sh\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(bad, 0o777); err != nil {
		t.Fatal(err)
	}
	code, _, errOut := runPatchdWithin(t, 60*time.Second, append([]string{"check"}, tr.flags()...)...)
	if code != exitUsage {
		t.Fatalf("check: code %d, want %d (a bad configuration)\n%s", code, exitUsage, errOut)
	}
	for _, want := range []string{tr.Config + ":", "log.level", "hook " + bad + " refused"} {
		if !strings.Contains(errOut, want) {
			t.Errorf("check output lacks %q:\n%s", want, errOut)
		}
	}
	if strings.Contains(errOut, "/etc/patchd/hooks.d") {
		t.Errorf("check looked at the default hooks directory:\n%s", errOut)
	}
}

// A newline or an escape in a hook's file name cannot forge lines in
// `hooks list` or `patchd check`: such names are printed quoted.
func TestHooksListQuotesControlCharacters(t *testing.T) {
	tr := newTestTree(t)
	name := "10-x\npre-patch   99-forged   runnable\x1b[2J"
	p := filepath.Join(tr.Hooks, "pre-patch", name)
	if err := os.WriteFile(p, []byte("#!/bin/sh\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(p, 0o777); err != nil { // refused: its reason names the path too
		t.Fatal(err)
	}
	code, out, errOut := runPatchdWithin(t, 60*time.Second, append([]string{"hooks", "list"}, tr.flags()...)...)
	if code != 0 {
		t.Fatalf("hooks list: code %d\n%s", code, errOut)
	}
	_, _, checkOut := runPatchdWithin(t, 60*time.Second, append([]string{"check"}, tr.flags()...)...)
	for what, text := range map[string]string{"hooks list": out, "check": checkOut} {
		for _, line := range strings.Split(text, "\n") {
			if strings.HasPrefix(line, "pre-patch   99-forged") || strings.Contains(line, "\x1b") {
				t.Errorf("%s printed a forged line or an escape: %q", what, line)
			}
		}
		// Quoted alone in the listing, inside a quoted path in check.
		q := strconv.Quote(name)
		if !strings.Contains(text, q[1:len(q)-1]) {
			t.Errorf("%s does not show the name quoted:\n%s", what, text)
		}
	}
}

// An invalid exporter-toolkit web configuration fails `patchd check`.
func TestCheckRejectsInvalidWebConfig(t *testing.T) {
	tr := newTestTree(t)
	webConfig := filepath.Join(tr.Root, "web.yml")
	for _, body := range []string{
		"nonsense: 1\n",
		"tls_server_config:\n  cert_file: " + filepath.Join(tr.Root, "missing.crt") + "\n  key_file: " + filepath.Join(tr.Root, "missing.key") + "\n",
	} {
		if err := os.WriteFile(webConfig, []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
		code, _, errOut := runPatchdWithin(t, 60*time.Second, append([]string{"check", "--web.config.file=" + webConfig}, tr.flags()...)...)
		if code != exitUsage || !strings.Contains(errOut, webConfig) {
			t.Errorf("check with web config %q: code %d, stderr %q; want a failure naming the file", body, code, errOut)
		}
	}
}
