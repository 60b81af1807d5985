package hooks

import (
	"context"
	"errors"
	"log/slog"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
	"unicode/utf8"
)

func readOrder(t *testing.T, root string) []string {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(root, "order.log"))
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		t.Fatal(err)
	}
	return strings.Fields(string(data))
}

// TestRunPhasePolicy runs the fixture tree: hooks run in byte order, skipped
// files never run, pre-patch stops at the first failure and reports the rest
// as not run, the other phases run everything.
func TestRunPhasePolicy(t *testing.T) {
	cases := []struct {
		phase    Phase
		ran      []string
		outcomes []Outcome
	}{
		{PrePatch, []string{"10-first", "20-fails"}, []Outcome{Success, Failed, NotRun, NotRun}},
		{PreReboot, []string{"10-first", "20-fails", "30-third", "9-sorts-after-30"}, []Outcome{Success, Failed, Success, Success}},
		{PostPatch, []string{"10-first", "20-fails", "30-third", "9-sorts-after-30"}, []Outcome{Success, Failed, Success, Success}},
	}
	for _, tc := range cases {
		t.Run(string(tc.phase), func(t *testing.T) {
			root := copyTree(t, "testdata/order")
			rec := newRecorder()
			r := NewRunner(Options{}, rec)
			var started, ended []string
			res, err := r.RunPhase(context.Background(), root, Env{Phase: tc.phase, Trigger: "manual"}, PhaseOptions{
				OnStart:  func(h Hook) error { started = append(started, h.Name); return nil },
				OnResult: func(res Result) error { ended = append(ended, res.Name); return nil },
			})
			if err != nil {
				t.Fatal(err)
			}
			var want []string
			for _, n := range tc.ran {
				want = append(want, string(tc.phase)+"/"+n)
			}
			if got := readOrder(t, root); !slices.Equal(got, want) {
				t.Errorf("order.log = %v, want %v", got, want)
			}
			var outcomes []Outcome
			for _, x := range res {
				outcomes = append(outcomes, x.Outcome)
			}
			if !slices.Equal(outcomes, tc.outcomes) {
				t.Errorf("outcomes = %v, want %v", outcomes, tc.outcomes)
			}
			if !slices.Equal(started, tc.ran) || !slices.Equal(ended, tc.ran) {
				t.Errorf("OnStart %v, OnResult %v; want both %v", started, ended, tc.ran)
			}
			if res[1].ExitCode != 3 || res[1].Error != "exit status 3" {
				t.Errorf("failing hook: exit %d, error %q", res[1].ExitCode, res[1].Error)
			}
			if PhaseSucceeded(res) {
				t.Error("PhaseSucceeded with a failed hook")
			}
			if got := rec.count(tc.phase, Failed); got != 1 {
				t.Errorf("failed runs = %v, want 1", got)
			}
			if got := rec.count(tc.phase, Success); got != len(tc.ran)-1 {
				t.Errorf("successful runs = %v, want %d", got, len(tc.ran)-1)
			}
			if got := rec.phaseRuns(tc.phase); !slices.Equal(got, []bool{false}) {
				t.Errorf("phase runs told = %v, want one, failed", got)
			}
		})
	}
}

// TestRefusedHooksNeverRun: every unsafe kind is refused and none runs; in
// pre-patch the first refusal fails the phase.
func TestRefusedHooksNeverRun(t *testing.T) {
	root := newRoot(t)
	dir := filepath.Join(root, "pre-patch")
	marker := filepath.Join(t.TempDir(), "ran")
	body := "#!/bin/sh\necho \"${0##*/}\" >> " + marker + "\n"
	writeHook(t, filepath.Join(dir, "10-world"), body, 0o757)
	writeHook(t, filepath.Join(dir, "20-group"), body, 0o775)
	target := filepath.Join(t.TempDir(), "target")
	writeHook(t, target, body, 0o777)
	if err := os.Symlink(target, filepath.Join(dir, "30-link")); err != nil {
		t.Fatal(err)
	}
	if os.Geteuid() == 0 {
		writeHook(t, filepath.Join(dir, "40-foreign"), body, 0o755)
		if err := os.Chown(filepath.Join(dir, "40-foreign"), 65534, 65534); err != nil {
			t.Fatal(err)
		}
	}
	for _, phase := range []Phase{PostPatch, PrePatch} {
		if phase == PostPatch {
			// Same files in post-patch: run-all policy, all refused.
			if err := os.Remove(filepath.Join(root, "post-patch")); err != nil {
				t.Fatal(err)
			}
			if err := os.Symlink(dir, filepath.Join(root, "post-patch")); err != nil {
				t.Fatal(err)
			}
		}
		rec := newRecorder()
		r := NewRunner(Options{}, rec)
		res, err := r.RunPhase(context.Background(), root, Env{Phase: phase}, PhaseOptions{})
		if err != nil {
			t.Fatal(err)
		}
		for i, x := range res {
			want := Refusal
			if phase == PrePatch && i > 0 {
				want = NotRun
			}
			if x.Outcome != want {
				t.Errorf("%s %s: %s (%s), want %s", phase, x.Name, x.Outcome, x.Error, want)
			}
		}
		if phase == PostPatch && len(res) < 3 {
			t.Errorf("post-patch reported %d hooks, want every refused one", len(res))
		}
		if got := rec.count(phase, Refusal); phase == PostPatch && got != len(res) {
			t.Errorf("refused runs = %v, want %d", got, len(res))
		}
	}
	if _, err := os.Stat(marker); !errors.Is(err, os.ErrNotExist) {
		data, _ := os.ReadFile(marker)
		t.Fatalf("a refused hook ran: %q", data)
	}
}

// TestRunHookRechecks: a hook listed as runnable that became unsafe before
// its turn is refused at run time.
func TestRunHookRechecks(t *testing.T) {
	root := newRoot(t)
	p := filepath.Join(root, "post-patch", "10-x")
	writeHook(t, p, okScript, 0o755)
	hs, _ := Discover(root, PostPatch)
	if err := os.Chmod(p, 0o777); err != nil {
		t.Fatal(err)
	}
	res := NewRunner(Options{}, nil).RunHook(context.Background(), hs[0], Env{Phase: PostPatch})
	if res.Outcome != Refusal {
		t.Errorf("outcome %s, want refused", res.Outcome)
	}
}

// TestEnvironmentContract checks the whole environment a hook gets, its
// working directory, stdin and process group.
func TestEnvironmentContract(t *testing.T) {
	root := newRoot(t)
	// A symlink to env(1) prints exactly the environment it was given.
	if err := os.Symlink("/usr/bin/env", filepath.Join(root, "post-patch", "10-env")); err != nil {
		t.Fatal(err)
	}
	writeHook(t, filepath.Join(root, "post-patch", "20-process"), `#!/bin/sh
echo "cwd=$(pwd)"
echo "stdin=$(readlink /proc/self/fd/0)"
read -r _ _ _ _ pgrp _ < /proc/$$/stat
echo "own-group=$([ "$pgrp" = "$$" ] && echo yes || echo no)"
`, 0o755)
	env := Env{Phase: PostPatch, CycleID: "c-42", Trigger: "gate", Document: "AWS-RunPatchBaseline",
		CommandID: "0b1c2d3e-cmd", Operation: "Install", InstanceID: "i-0123456789abcdef0",
		Region: "eu-west-1", Attempt: 2, Result: "success", Rebooted: true}
	res, err := NewRunner(Options{}, nil).RunPhase(context.Background(), root, env, PhaseOptions{
		Attempt: func(h Hook) int { return 3 },
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(res) != 2 || !PhaseSucceeded(res) {
		t.Fatalf("results %+v", res)
	}
	home := "/root"
	if os.Geteuid() != 0 {
		home = os.Getenv("HOME")
	}
	want := []string{
		"HOME=" + home, "LANG=C.UTF-8", "PATCHD_ASSOCIATION_ID=", "PATCHD_ATTEMPT=3", "PATCHD_COMMAND_ID=0b1c2d3e-cmd",
		"PATCHD_CYCLE_ID=c-42", "PATCHD_DOCUMENT=AWS-RunPatchBaseline", "PATCHD_DOCUMENT_ID=", "PATCHD_DRY_RUN=0",
		"PATCHD_INSTANCE_ID=i-0123456789abcdef0", "PATCHD_OPERATION=Install", "PATCHD_PHASE=post-patch",
		"PATCHD_REBOOTED=1", "PATCHD_REGION=eu-west-1", "PATCHD_RESULT=success", "PATCHD_RESULT_REASON=", "PATCHD_TRIGGER=gate",
		"PATH=" + DefaultPath,
	}
	got := strings.Split(strings.TrimSpace(res[0].StdoutTail), "\n")
	slices.Sort(got)
	if !slices.Equal(got, want) {
		t.Errorf("environment:\n got %q\nwant %q", got, want)
	}
	if want := "cwd=/\nstdin=/dev/null\nown-group=yes\n"; res[1].StdoutTail != want {
		t.Errorf("process: %q, want %q", res[1].StdoutTail, want)
	}
	// Pre-patch gets neither PATCHD_RESULT nor PATCHD_REBOOTED.
	for _, kv := range (Env{Phase: PrePatch}).Environ() {
		if strings.HasPrefix(kv, "PATCHD_RESULT=") || strings.HasPrefix(kv, "PATCHD_REBOOTED=") {
			t.Errorf("pre-patch environment has %s", kv)
		}
	}
}

func TestDryRunStartsNothing(t *testing.T) {
	root := copyTree(t, "testdata/order")
	r := NewRunner(Options{}, nil)
	res, err := r.RunPhase(context.Background(), root, Env{Phase: PrePatch, DryRun: true}, PhaseOptions{
		OnStart: func(Hook) error { t.Error("OnStart called in a dry run"); return nil },
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(res) != 4 || !PhaseSucceeded(res) {
		t.Errorf("dry run results %+v, want 4 dry_run", res)
	}
	if got := readOrder(t, root); len(got) != 0 {
		t.Errorf("dry run ran hooks: %v", got)
	}
}

func TestRunPhaseCallbacks(t *testing.T) {
	t.Run("skip finished hooks", func(t *testing.T) {
		root := copyTree(t, "testdata/order")
		res, err := NewRunner(Options{}, nil).RunPhase(context.Background(), root, Env{Phase: PostPatch}, PhaseOptions{
			Skip: func(h Hook) bool { return h.Name == "10-first" || h.Name == "20-fails" },
		})
		if err != nil {
			t.Fatal(err)
		}
		if got := readOrder(t, root); !slices.Equal(got, []string{"post-patch/30-third", "post-patch/9-sorts-after-30"}) {
			t.Errorf("ran %v", got)
		}
		if len(res) != 2 {
			t.Errorf("%d results, want 2 (skipped hooks are not reported)", len(res))
		}
	})
	t.Run("OnStart error aborts", func(t *testing.T) {
		root := copyTree(t, "testdata/order")
		boom := errors.New("state disk full")
		res, err := NewRunner(Options{}, nil).RunPhase(context.Background(), root, Env{Phase: PostPatch}, PhaseOptions{
			OnStart: func(h Hook) error {
				if h.Name == "20-fails" {
					return boom
				}
				return nil
			},
		})
		if !errors.Is(err, boom) || len(res) != 1 {
			t.Errorf("err %v, %d results; want the OnStart error after 1 result", err, len(res))
		}
		if got := readOrder(t, root); !slices.Equal(got, []string{"post-patch/10-first"}) {
			t.Errorf("ran %v", got)
		}
	})
}

// TestTimeoutKillsGroup: a hook that ignores SIGTERM, and one whose
// grandchild sleeps holding stdout, both end within timeout + grace (plus
// the drain and a margin for a loaded machine), and the group is gone.
func TestTimeoutKillsGroup(t *testing.T) {
	const (
		timeout = 500 * time.Millisecond
		grace   = 500 * time.Millisecond
		drain   = 500 * time.Millisecond
		margin  = 3 * time.Second
	)
	cases := []struct {
		name, body string
	}{
		{"traps SIGTERM", `#!/bin/sh
trap '' TERM
echo $$ > "${0%/*}/../pids"
echo waiting
while :; do sleep 1; done
`},
		{"grandchild holds stdout", `#!/bin/sh
sh -c 'trap "" TERM; sleep 300' &
echo $! > "${0%/*}/../pids"
echo forked
wait
`},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			root := newRoot(t)
			writeHook(t, filepath.Join(root, "pre-reboot", "10-slow"), tc.body, 0o755)
			hs, _ := Discover(root, PreReboot)
			r := NewRunner(Options{Timeout: time.Hour, PhaseTimeouts: map[Phase]time.Duration{PreReboot: timeout},
				KillGrace: grace, DrainTimeout: drain}, nil)
			start := time.Now()
			res := r.RunHook(context.Background(), hs[0], Env{Phase: PreReboot})
			took := time.Since(start)
			if res.Outcome != TimedOut || res.ExitCode != -1 {
				t.Errorf("outcome %s exit %d (%s), want timed_out -1", res.Outcome, res.ExitCode, res.Error)
			}
			if took < timeout || took > timeout+grace+drain+margin {
				t.Errorf("returned after %s, want between %s and %s", took, timeout, timeout+grace+drain+margin)
			}
			if res.StdoutTail == "" {
				t.Errorf("stdout tail %q lost the output written before the kill", res.StdoutTail)
			}
			data, err := os.ReadFile(filepath.Join(root, "pids"))
			if err != nil {
				t.Fatal(err)
			}
			pid, _ := strconv.Atoi(strings.TrimSpace(string(data)))
			assertGone(t, pid)
		})
	}
}

// assertGone checks that pid is dead: absent, or a zombie waiting for init.
func assertGone(t *testing.T, pid int) {
	t.Helper()
	if pid <= 0 {
		t.Fatalf("bad pid %d", pid)
	}
	// SIGKILL is delivered asynchronously: a process signalled an instant
	// ago may still show as running (R) while it is being torn down. Give
	// the kernel a bounded moment; a survivor of SIGKILL stays alive.
	deadline := time.NewTimer(5 * time.Second)
	defer deadline.Stop()
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	for {
		stat, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
		if err != nil {
			return
		}
		if i := strings.LastIndexByte(string(stat), ')'); i >= 0 && strings.HasPrefix(string(stat[i+1:]), " Z") {
			return
		}
		select {
		case <-tick.C:
		case <-deadline.C:
			_ = syscall.Kill(pid, syscall.SIGKILL)
			t.Errorf("process %d still alive 5 s after the hook was killed: %s", pid, stat)
			return
		}
	}
}

// TestBackgroundChildDoesNotHang: a hook that exits 0 but leaves a child
// holding its stdout returns after the drain time, successful.
func TestBackgroundChildDoesNotHang(t *testing.T) {
	root := newRoot(t)
	writeHook(t, filepath.Join(root, "post-patch", "10-daemonish"), `#!/bin/sh
sleep 300 &
echo $! > "${0%/*}/../pids"
echo started
`, 0o755)
	rec := &logRecorder{}
	r := NewRunner(Options{DrainTimeout: 300 * time.Millisecond, Logger: slog.New(rec)}, nil)
	hs, _ := Discover(root, PostPatch)
	start := time.Now()
	res := r.RunHook(context.Background(), hs[0], Env{Phase: PostPatch})
	took := time.Since(start)
	data, _ := os.ReadFile(filepath.Join(root, "pids"))
	if pid, _ := strconv.Atoi(strings.TrimSpace(string(data))); pid > 0 {
		t.Cleanup(func() { _ = syscall.Kill(pid, syscall.SIGKILL) })
	}
	if res.Outcome != Success || res.StdoutTail != "started\n" {
		t.Errorf("outcome %s, stdout %q", res.Outcome, res.StdoutTail)
	}
	if took > 5*time.Second {
		t.Errorf("took %s: the background child held patchd", took)
	}
	if !rec.has("background process") {
		t.Error("no warning about the background process")
	}
}

func TestCancelInterruptsPhase(t *testing.T) {
	root := newRoot(t)
	writeHook(t, filepath.Join(root, "post-patch", "10-ok"), okScript, 0o755)
	writeHook(t, filepath.Join(root, "post-patch", "20-slow"), "#!/bin/sh\necho up\nexec sleep 300\n", 0o755)
	rec := &logRecorder{}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	r := NewRunner(Options{KillGrace: time.Second, Logger: slog.New(&cancelOnLine{rec, "up", cancel})}, nil)
	var ended []string
	res, err := r.RunPhase(ctx, root, Env{Phase: PostPatch}, PhaseOptions{
		OnResult: func(res Result) error { ended = append(ended, res.Name); return nil },
	})
	if !errors.Is(err, context.Canceled) {
		t.Errorf("err %v, want context.Canceled", err)
	}
	if len(res) != 1 || res[0].Name != "10-ok" || !slices.Equal(ended, []string{"10-ok"}) {
		t.Errorf("results %+v, OnResult %v: the interrupted hook must not be reported finished", res, ended)
	}
}

// cancelOnLine cancels when the hook logs a given line: the test then
// knows the hook is running without sleeping.
type cancelOnLine struct {
	*logRecorder
	line   string
	cancel func()
}

func (c *cancelOnLine) Handle(ctx context.Context, r slog.Record) error {
	r.Attrs(func(a slog.Attr) bool {
		if a.Key == "line" && a.Value.String() == c.line {
			c.cancel()
		}
		return true
	})
	return c.logRecorder.Handle(ctx, r)
}

func (c *cancelOnLine) WithAttrs(as []slog.Attr) slog.Handler {
	return &cancelOnLine{&logRecorder{}, c.line, c.cancel}
}

// TestOutputIsCapped: 10 MB of lines and a 1 MB single line are read to the
// end without being buffered: the tail is the last 4 KiB, logged lines are
// cut at 4 KiB, logging stops at the limit, and the memory used stays far
// below the output's size.
func TestOutputIsCapped(t *testing.T) {
	cases := []struct {
		name, cmd string
		lastLine  string
	}{
		{"10 MB of lines", `yes 0123456789abcdef | head -c 10485760; echo; echo LAST`, "LAST"},
		{"1 MB single line", `head -c 1048576 /dev/zero | tr '\0' a; echo END`, ""},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			root := newRoot(t)
			writeHook(t, filepath.Join(root, "post-patch", "10-loud"), "#!/bin/sh\n"+tc.cmd+"\n", 0o755)
			rec := &logRecorder{}
			r := NewRunner(Options{Logger: slog.New(rec), MaxLogBytes: 64 << 10}, nil)
			hs, _ := Discover(root, PostPatch)
			var before, after runtime.MemStats
			runtime.GC()
			runtime.ReadMemStats(&before)
			res := r.RunHook(context.Background(), hs[0], Env{Phase: PostPatch})
			runtime.ReadMemStats(&after)
			if res.Outcome != Success {
				t.Fatalf("outcome %s: %s", res.Outcome, res.Error)
			}
			if len(res.StdoutTail) != TailSize {
				t.Errorf("tail is %d bytes, want %d", len(res.StdoutTail), TailSize)
			}
			if tc.lastLine != "" && !strings.HasSuffix(res.StdoutTail, "\n"+tc.lastLine+"\n") {
				t.Errorf("tail ends %q", res.StdoutTail[len(res.StdoutTail)-40:])
			}
			if tc.lastLine == "" && !strings.HasSuffix(res.StdoutTail, "aaaaEND\n") {
				t.Errorf("tail ends %q", res.StdoutTail[len(res.StdoutTail)-40:])
			}
			logged := 0
			for _, l := range rec.lines("stdout") {
				if len(l) > maxLine {
					t.Errorf("logged a %d-byte line", len(l))
				}
				logged += len(l)
			}
			if logged == 0 || logged > 64<<10+maxLine {
				t.Errorf("logged %d bytes, want some and at most the limit", logged)
			}
			if alloc := after.TotalAlloc - before.TotalAlloc; alloc > 8<<20 {
				t.Errorf("allocated %d bytes for the run: the output is being buffered", alloc)
			}
		})
	}
}

func TestNonUTF8Output(t *testing.T) {
	root := newRoot(t)
	writeHook(t, filepath.Join(root, "post-patch", "10-latin1"), `#!/bin/sh
printf 'caf\351 \377\376 ok\n'
printf 'err \200\n' >&2
`, 0o755)
	rec := &logRecorder{}
	hs, _ := Discover(root, PostPatch)
	res := NewRunner(Options{Logger: slog.New(rec)}, nil).RunHook(context.Background(), hs[0], Env{Phase: PostPatch})
	if res.Outcome != Success {
		t.Fatal(res.Error)
	}
	for _, s := range []string{res.StdoutTail, res.StderrTail} {
		if !utf8.ValidString(s) || !strings.Contains(s, "\uFFFD") {
			t.Errorf("tail %q is not valid UTF-8 with replacement characters", s)
		}
	}
	if l := rec.lines("stdout"); len(l) != 1 || l[0] != "caf\uFFFD \uFFFD ok" {
		t.Errorf("logged stdout %q", l)
	}
	if l := rec.lines("stderr"); len(l) != 1 || l[0] != "err \uFFFD" {
		t.Errorf("logged stderr %q", l)
	}
}

func TestStartFailure(t *testing.T) {
	root := newRoot(t)
	writeHook(t, filepath.Join(root, "post-patch", "10-bad-interpreter"), "#!/nonexistent/interpreter\n", 0o755)
	hs, _ := Discover(root, PostPatch)
	res := NewRunner(Options{}, nil).RunHook(context.Background(), hs[0], Env{Phase: PostPatch})
	if res.Outcome != Failed || !strings.Contains(res.Error, "interpreter") {
		t.Errorf("outcome %s, error %q", res.Outcome, res.Error)
	}
}

func TestTail(t *testing.T) {
	for _, sizes := range [][]int{{10}, {4096}, {5000}, {100, 4000, 100}, {3000, 3000, 3000}, {1, 8191, 7}} {
		var tl tail
		var all []byte
		for i, n := range sizes {
			p := []byte(strings.Repeat(string(rune('a'+i)), n))
			tl.Write(p)
			all = append(all, p...)
		}
		want := all
		if len(want) > TailSize {
			want = want[len(want)-TailSize:]
		}
		if got := tl.String(); got != string(want) {
			t.Errorf("sizes %v: tail differs (len %d, want %d)", sizes, len(got), len(want))
		}
	}
}

// TestRelativeRoot: a relative --path.hooks still runs the hooks, though
// they run in /.
func TestRelativeRoot(t *testing.T) {
	root := newRoot(t)
	writeHook(t, filepath.Join(root, "post-patch", "10-ok"), okScript, 0o755)
	t.Chdir(filepath.Dir(root))
	res, err := NewRunner(Options{}, nil).RunPhase(context.Background(), "hooks.d", Env{Phase: PostPatch}, PhaseOptions{})
	if err != nil || len(res) != 1 || res[0].Outcome != Success {
		t.Fatalf("%v %+v", err, res)
	}
}

// TestSetOptionsAppliesToNextHook: a reload's timeout governs the hooks
// started after it.
func TestSetOptionsAppliesToNextHook(t *testing.T) {
	root := newRoot(t)
	writeHook(t, filepath.Join(root, "post-patch", "10-slow"), "#!/bin/sh\nexec sleep 300\n", 0o755)
	hs, _ := Discover(root, PostPatch)
	r := NewRunner(Options{Timeout: time.Hour}, nil)
	r.SetOptions(Options{Timeout: 200 * time.Millisecond, KillGrace: 200 * time.Millisecond, DrainTimeout: 200 * time.Millisecond})
	done := make(chan Result, 1)
	go func() { done <- r.RunHook(context.Background(), hs[0], Env{Phase: PostPatch}) }()
	select {
	case res := <-done:
		if res.Outcome != TimedOut {
			t.Errorf("outcome %s, want timed_out", res.Outcome)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("the new timeout was not applied")
	}
}

// TestStopLetsHookChooseItsExit: at a stop of patchd, a hook that traps
// SIGTERM and exits reports its own exit and is not "interrupted"; one the
// signal kills is.
func TestStopLetsHookChooseItsExit(t *testing.T) {
	cases := []struct {
		name        string
		body        string
		outcome     Outcome
		exitCode    int
		interrupted bool
	}{
		{"killed by the signal", "#!/bin/sh\necho up\nexec sleep 300\n", Failed, -1, true},
		{"traps and exits 0", "#!/bin/sh\ntrap 'echo bye; exit 0' TERM\necho up\nsleep 300 &\nwait\n", Success, 0, false},
		{"traps and exits 4", "#!/bin/sh\ntrap 'exit 4' TERM\necho up\nsleep 300 &\nwait\n", Failed, 4, false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			root := newRoot(t)
			writeHook(t, filepath.Join(root, "pre-reboot", "10-x"), tc.body, 0o755)
			hs, _ := Discover(root, PreReboot)
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			rec := newRecorder()
			r := NewRunner(Options{KillGrace: 5 * time.Second, DrainTimeout: 500 * time.Millisecond,
				Logger: slog.New(&cancelOnLine{&logRecorder{}, "up", cancel})}, rec)
			res := r.RunHook(ctx, hs[0], Env{Phase: PreReboot})
			if res.Outcome != tc.outcome || res.ExitCode != tc.exitCode || res.Interrupted != tc.interrupted {
				t.Errorf("got %s exit %d interrupted %v (%s), want %s %d %v",
					res.Outcome, res.ExitCode, res.Interrupted, res.Error, tc.outcome, tc.exitCode, tc.interrupted)
			}
			counted := rec.total(PreReboot)
			if want := map[bool]int{true: 0, false: 1}[tc.interrupted]; counted != want {
				t.Errorf("counted %v runs, want %v (an interrupted run is not a result)", counted, want)
			}
			// Once stopping, nothing more starts.
			if res := r.RunHook(ctx, hs[0], Env{Phase: PreReboot}); !res.Interrupted || res.Duration != 0 {
				t.Errorf("a hook started after the stop: %+v", res)
			}
		})
	}
}

// TestProgressLevel: the daemon (zero Options) logs a hook's start and end
// at info; a ProgressLevel moves only those two lines.
func TestProgressLevel(t *testing.T) {
	root := newRoot(t)
	writeHook(t, filepath.Join(root, "post-patch", "10-ok"), "#!/bin/sh\necho fine\n", 0o755)
	hs, _ := Discover(root, PostPatch)
	for _, tc := range []struct {
		level slog.Level
		want  string
	}{{0, "INFO"}, {slog.LevelDebug, "DEBUG"}} {
		rec := &logRecorder{}
		res := NewRunner(Options{Logger: slog.New(rec), ProgressLevel: tc.level}, nil).RunHook(context.Background(), hs[0], Env{Phase: PostPatch})
		if res.Outcome != Success {
			t.Fatal(res.Error)
		}
		levels := map[string]string{}
		rec.mu.Lock()
		for _, r := range rec.records {
			levels[r["msg"]] = r["level"]
		}
		rec.mu.Unlock()
		if levels["hook starting"] != tc.want || levels["hook finished"] != tc.want || levels["hook output"] != "INFO" {
			t.Errorf("ProgressLevel %v: levels %v", tc.level, levels)
		}
	}
}
