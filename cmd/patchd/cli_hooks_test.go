package main

import (
	"encoding/json"
	"io"
	"io/fs"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

// copyHookFixture copies hooks/testdata/order into the tree's hooks dir with
// explicit modes (git keeps only the execute bit).
func copyHookFixture(t *testing.T, tr testTree) {
	t.Helper()
	src := filepath.Join("..", "..", "hooks", "testdata", "order")
	err := filepath.WalkDir(src, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		rel, _ := filepath.Rel(src, p)
		data, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		info, _ := d.Info()
		mode := fs.FileMode(0o644)
		if info.Mode()&0o111 != 0 {
			mode = 0o755
		}
		out := filepath.Join(tr.Hooks, rel)
		if err := os.WriteFile(out, data, mode); err != nil {
			return err
		}
		return os.Chmod(out, mode)
	})
	if err != nil {
		t.Fatal(err)
	}
}

func TestHooksListAndRun(t *testing.T) {
	tr := newTestTree(t)
	copyHookFixture(t, tr)
	order := func() string {
		data, _ := os.ReadFile(filepath.Join(tr.Hooks, "order.log"))
		os.Remove(filepath.Join(tr.Hooks, "order.log"))
		return strings.Join(strings.Fields(string(data)), " ")
	}

	code, out, errOut := runPatchd(t, append([]string{"hooks", "list"}, tr.flags()...)...)
	if code != 0 {
		t.Fatalf("hooks list: %d\n%s", code, errOut)
	}
	for _, want := range []string{
		"pre-patch   10-first", "runnable",
		"40-old.bak         skipped(backup or package-manager file (name ends in .bak))",
		"skipped(not executable",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("hooks list lacks %q:\n%s", want, out)
		}
	}

	code, out, _ = runPatchd(t, append([]string{"hooks", "list", "--output=json"}, tr.flags()...)...)
	var runnable int
	for _, l := range strings.Split(strings.TrimSpace(out), "\n") {
		var h struct{ Phase, Hook, Path, State, Reason string }
		if err := json.Unmarshal([]byte(l), &h); err != nil {
			t.Fatalf("hooks list json line %q: %v", l, err)
		}
		if h.State == "runnable" {
			runnable++
			if h.Path != filepath.Join(tr.Hooks, h.Phase, h.Hook) || h.Reason != "" {
				t.Errorf("json line %+v", h)
			}
		}
	}
	if code != 0 || runnable != 12 {
		t.Errorf("hooks list json: exit %d, %d runnable, want 0 and 12", code, runnable)
	}

	cases := []struct {
		name  string
		args  []string
		code  int
		order string
		lines []string
	}{
		{"pre-patch stops at the failure", []string{"pre-patch"}, 1, "pre-patch/10-first pre-patch/20-fails",
			[]string{"pre-patch/10-first", "success", "pre-patch/20-fails", "failed    exit=3", "pre-patch/30-third", "not_run"}},
		{"post-patch runs all", []string{"post-patch"}, 1, "post-patch/10-first post-patch/20-fails post-patch/30-third post-patch/9-sorts-after-30", nil},
		{"dry run starts nothing", []string{"pre-patch", "--dry-run"}, 0, "", []string{"pre-patch/20-fails", "dry_run"}},
		{"unknown phase is a usage error", []string{"patching"}, 2, "", nil},
		{"bad timeout is a usage error", []string{"pre-patch", "--timeout=soon"}, 2, "", nil},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			args := append(append([]string{"hooks", "run"}, tc.args...), tr.flags()...)
			code, out, errOut := runPatchd(t, args...)
			if code != tc.code {
				t.Errorf("exit %d, want %d\nstdout %s\nstderr %s", code, tc.code, out, errOut)
			}
			if got := order(); got != tc.order {
				t.Errorf("ran %q, want %q", got, tc.order)
			}
			for _, l := range tc.lines {
				if !strings.Contains(out, l) {
					t.Errorf("output lacks %q:\n%s", l, out)
				}
			}
		})
	}

	t.Run("progress lines only at debug", func(t *testing.T) {
		// stdout has a line per hook; the runner's "starting" and
		// "finished" lines would say it again. A failure is still logged.
		args := append([]string{"hooks", "run", "pre-patch"}, tr.flags()...)
		_, _, errOut := runPatchd(t, args...)
		order()
		if strings.Contains(errOut, "hook starting") || strings.Contains(errOut, "hook finished") || !strings.Contains(errOut, "hook failed") {
			t.Errorf("default level: stderr %s", errOut)
		}
		_, _, errOut = runPatchd(t, append(args, "--log.level=debug")...)
		order()
		if !strings.Contains(errOut, `msg="hook starting"`) || !strings.Contains(errOut, `msg="hook finished"`) {
			t.Errorf("--log.level=debug: stderr %s", errOut)
		}
	})

	t.Run("an empty phase succeeds", func(t *testing.T) {
		empty := append(tr.flags(), "--path.hooks="+filepath.Join(tr.Root, "state"))
		empty = slices.DeleteFunc(empty, func(a string) bool { return a == "--path.hooks="+tr.Hooks })
		code, out, errOut := runPatchd(t, append([]string{"hooks", "run", "pre-patch"}, empty...)...)
		if code != 0 || out != "" {
			t.Errorf("exit %d, output %q\n%s", code, out, errOut)
		}
	})

	t.Run("json output", func(t *testing.T) {
		code, out, _ := runPatchd(t, append([]string{"hooks", "run", "pre-reboot", "--output=json"}, tr.flags()...)...)
		order()
		if code != 1 {
			t.Errorf("exit %d, want 1", code)
		}
		lines := strings.Split(strings.TrimSpace(out), "\n")
		if len(lines) != 4 {
			t.Fatalf("%d lines, want 4:\n%s", len(lines), out)
		}
		var first struct {
			Phase, Hook, Result string
			ExitCode            int     `json:"exit_code"`
			Duration            float64 `json:"duration_seconds"`
		}
		if err := json.Unmarshal([]byte(lines[1]), &first); err != nil {
			t.Fatal(err)
		}
		if first.Phase != "pre-reboot" || first.Hook != "20-fails" || first.Result != "failed" || first.ExitCode != 3 || first.Duration <= 0 {
			t.Errorf("json line %+v", first)
		}
	})
}

// TestHooksRunTimeoutFlag: --timeout bounds each hook; the slow one is
// killed and the run fails.
func TestHooksRunTimeoutFlag(t *testing.T) {
	tr := newTestTree(t)
	p := filepath.Join(tr.Hooks, "post-patch", "10-slow")
	if err := os.WriteFile(p, []byte("#!/bin/sh\nexec sleep 300\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	code, out, errOut := runPatchd(t, append([]string{"hooks", "run", "post-patch", "--timeout=300ms", "--hooks.kill-grace=300ms"}, tr.flags()...)...)
	if code != 1 || !strings.Contains(out, "timed_out") {
		t.Errorf("exit %d, output %q, want 1 and timed_out\n%s", code, out, errOut)
	}
	if took := time.Since(start); took > 20*time.Second {
		t.Errorf("took %s", took)
	}
}

func TestCheckReportsHookProblems(t *testing.T) {
	tr := newTestTree(t)
	bad := filepath.Join(tr.Hooks, "pre-patch", "10-open")
	if err := os.WriteFile(bad, []byte("#!/bin/sh\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(bad, 0o777); err != nil {
		t.Fatal(err)
	}
	if err := os.Mkdir(filepath.Join(tr.Hooks, "prepatch"), 0o755); err != nil {
		t.Fatal(err)
	}
	code, _, errOut := runPatchd(t, append([]string{"check"}, tr.flags()...)...)
	if code != 1 {
		t.Errorf("check exit %d, want 1", code)
	}
	for _, want := range []string{
		"hook " + bad + " refused, it will not run: file " + bad + " is world-writable: chmod o-w " + bad,
		filepath.Join(tr.Hooks, "prepatch") + ": not a phase directory",
		"2 problem(s)",
	} {
		if !strings.Contains(errOut, want) {
			t.Errorf("check output lacks %q:\n%s", want, errOut)
		}
	}
	missing := []string{"--config.file=" + tr.Config, "--path.hooks=" + filepath.Join(tr.Root, "nowhere")}
	if code, _, errOut := runPatchd(t, append([]string{"check"}, missing...)...); code != 1 || !strings.Contains(errOut, "does not exist: create it") {
		t.Errorf("missing hooks dir: exit %d, %q", code, errOut)
	}
}

// TestDaemonHookMetrics: the daemon exports the hook series from the start
// and patchd_hooks_refused follows the tree without a restart.
func TestDaemonHookMetrics(t *testing.T) {
	tr := newTestTree(t)
	addr := freePort(t)
	startDaemon(t, tr, "--web.listen-address="+addr)
	// "patchd started" is logged before the listener is up: poll.
	var body string
	eventually(t, 30*time.Second, "the metrics endpoint", func() bool {
		body = tryGet("http://" + addr + "/metrics")
		return body != ""
	})
	for _, want := range []string{
		`patchd_hook_runs_total{phase="pre-patch",result="success"} 0`,
		`patchd_hook_runs_total{phase="post-patch",result="timed_out"} 0`,
		`patchd_hook_duration_seconds_bucket{phase="pre-reboot",le="+Inf"} 0`,
		`patchd_hook_last_run_success{phase="post-patch"} 0`,
		`patchd_hook_last_run_timestamp_seconds{phase="pre-patch"} 0`,
		`patchd_hooks_refused{phase="pre-patch"} 0`,
	} {
		if !strings.Contains(body, want) {
			t.Errorf("/metrics lacks %s", want)
		}
	}
	// Lint only this part's families: others' are theirs to check.
	var mine []string
	for _, l := range strings.Split(body, "\n") {
		if strings.Contains(l, "patchd_hook") {
			mine = append(mine, l)
		}
	}
	promtoolCheck(t, strings.Join(mine, "\n")+"\n")
	bad := filepath.Join(tr.Hooks, "pre-patch", "10-open")
	if err := os.WriteFile(bad, []byte("#!/bin/sh\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(bad, 0o777); err != nil {
		t.Fatal(err)
	}
	eventually(t, 30*time.Second, "patchd_hooks_refused to count the new hook", func() bool {
		return strings.Contains(tryGet("http://"+addr+"/metrics"), `patchd_hooks_refused{phase="pre-patch"} 1`)
	})
}

// tryGet returns the body of a 200 answer, or "".
func tryGet(url string) string {
	resp, err := http.Get(url)
	if err != nil {
		return ""
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil || resp.StatusCode != http.StatusOK {
		return ""
	}
	return string(b)
}
