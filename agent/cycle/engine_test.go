package cycle

import (
	"context"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jonboulle/clockwork"
	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/patchd/patchd/agent/agentlog"
	"github.com/patchd/patchd/agent/ledger"
	"github.com/patchd/patchd/agent/ssm"
	"github.com/patchd/patchd/agent/ssm/ssmsim"
	"github.com/patchd/patchd/hooks"
)

// fakeRunner serves fixed hook lists and records every run.
type fakeRunner struct {
	mu    sync.Mutex
	hooks map[hooks.Phase][]string
	fail  map[string]int // phase/name -> fail this many first runs
	// block, when set, holds runs of the named hook until ctx is done.
	block string
	// trap, when set, names a hook that runs until the stop and then exits
	// 143 on its own (it traps SIGTERM).
	trap  string
	runs  []run
	start chan string // receives phase/name at each run start, if set
}

type run struct {
	name string
	env  hooks.Env
}

func (f *fakeRunner) Discover(p hooks.Phase) ([]hooks.Hook, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []hooks.Hook
	for _, n := range f.hooks[p] {
		st := hooks.Runnable
		if strings.HasPrefix(n, "refused") {
			st = hooks.Refused
		}
		out = append(out, hooks.Hook{Phase: p, Name: n, State: st})
	}
	return out, nil
}

func (f *fakeRunner) RunHook(ctx context.Context, h hooks.Hook, env hooks.Env) hooks.Result {
	key := string(h.Phase) + "/" + h.Name
	f.mu.Lock()
	f.runs = append(f.runs, run{key, env})
	fails := f.fail[key] > 0
	if fails {
		f.fail[key]--
	}
	block := f.block == key
	start := f.start
	f.mu.Unlock()
	if start != nil {
		start <- key
	}
	if block {
		<-ctx.Done()
		// As the real runner: the stop's signal ended it.
		return hooks.Result{Phase: h.Phase, Name: h.Name, Outcome: hooks.Failed, ExitCode: -1, Interrupted: true}
	}
	if f.trap == key {
		// It runs until the stop's SIGTERM, traps it and exits non-zero
		// on its own: it finished, with that failure.
		<-ctx.Done()
		return hooks.Result{Phase: h.Phase, Name: h.Name, Outcome: hooks.Failed, ExitCode: 143}
	}
	if fails {
		return hooks.Result{Phase: h.Phase, Name: h.Name, Outcome: hooks.Failed, ExitCode: 3}
	}
	return hooks.Result{Phase: h.Phase, Name: h.Name, Outcome: hooks.Success, StdoutTail: "ok " + env.Trigger}
}

func (f *fakeRunner) count(key string) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	n := 0
	for _, r := range f.runs {
		if r.name == key {
			n++
		}
	}
	return n
}

func (f *fakeRunner) last(key string) hooks.Env {
	f.mu.Lock()
	defer f.mu.Unlock()
	for i := len(f.runs) - 1; i >= 0; i-- {
		if f.runs[i].name == key {
			return f.runs[i].env
		}
	}
	return hooks.Env{}
}

type fakePkgs struct {
	mu   sync.Mutex
	pkgs []ledger.Package
}

func (p *fakePkgs) Snapshot(context.Context) ([]ledger.Package, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]ledger.Package(nil), p.pkgs...), nil
}

func (p *fakePkgs) set(pk ...ledger.Package) {
	p.mu.Lock()
	p.pkgs = pk
	p.mu.Unlock()
}

type shutdownFlag bool

func (s shutdownFlag) ShuttingDown(context.Context) bool { return bool(s) }

// harness runs one engine over a state dir; restart() simulates a crash and
// a new patchd on the same dir.
type harness struct {
	t      *testing.T
	dir    string
	agent  string
	runner *fakeRunner
	pkgs   *fakePkgs
	clock  *clockwork.FakeClock
	set    Settings
	down   shutdownFlag
	e      *Engine
	reg    *prometheus.Registry
	cancel context.CancelFunc
	done   chan error
	noScan bool // start without the watcher's first scan
	// snapDelay is the engine's SnapshotDelay (0 in most tests).
	snapDelay time.Duration
}

func newHarness(t *testing.T, r *fakeRunner) *harness {
	h := &harness{t: t, dir: t.TempDir(), agent: t.TempDir(), runner: r, pkgs: &fakePkgs{},
		clock: clockwork.NewFakeClockAt(time.Date(2026, 11, 1, 10, 0, 0, 0, time.UTC)),
		set:   Settings{FailsafeAge: 3 * time.Hour, PostPatchRetries: 2, PostPatchRetryBackoff: time.Minute, LedgerMaxEntries: 10}}
	h.pkgs.set(ledger.Package{Name: "bash", Version: "1", Arch: "amd64"})
	h.start()
	t.Cleanup(h.stop)
	return h
}

func (h *harness) start() {
	h.reg = prometheus.NewRegistry()
	e, err := New(Options{StateDir: h.dir, AgentData: h.agent, Runner: h.runner, Packages: h.pkgs, SnapshotDelay: h.snapDelay,
		Settings: func() Settings { return h.set }, Reg: h.reg, Clock: h.clock, Shutdown: h.down,
		StopBound: time.Minute, BootID: func() string { return "boot-1" }})
	if err != nil {
		h.t.Fatal(err)
	}
	h.e = e
	ctx, cancel := context.WithCancel(context.Background())
	h.cancel, h.done = cancel, make(chan error, 1)
	go func() { h.done <- e.Run(ctx) }()
	if !h.noScan {
		// The command watcher's first scan, as the daemon wires it.
		e.DocumentsScanned(h.listPresent())
	}
}

// listPresent lists the state files in the fake agent's folders, as the
// command watcher's first scan holds them.
func (h *harness) listPresent() []string {
	var out []string
	for _, f := range []ssm.Folder{ssm.Pending, ssm.Current} {
		p, err := ssm.ListFolder(h.agent, f)
		if err != nil {
			h.t.Fatal(err)
		}
		out = append(out, p...)
	}
	return out
}

func (h *harness) stop() {
	if h.cancel != nil {
		h.cancel()
		<-h.done
		h.cancel = nil
	}
}

func (h *harness) restart() { h.stop(); h.start() }

// flush waits until the engine handled everything sent before.
func (h *harness) flush() {
	c := make(chan struct{})
	h.e.enqueue(c)
	select {
	case <-c:
	case <-time.After(30 * time.Second):
		h.t.Fatal("engine did not handle its queue within 30s")
	}
}

func (h *harness) send(evs ...ssm.CommandEvent) {
	for _, ev := range evs {
		h.e.Command(ev)
	}
	h.flush()
}

// present creates or removes the document's state file in current/.
func (h *harness) present(id string, on bool) {
	dir := ssm.StateDir(h.agent, "i-0123456789abcdef0", ssm.Current)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		h.t.Fatal(err)
	}
	p := filepath.Join(dir, id)
	if on {
		if err := os.WriteFile(p, []byte("{}"), 0o600); err != nil {
			h.t.Fatal(err)
		}
	} else {
		os.Remove(p)
	}
}

func install(id, kind, status string) ssm.CommandEvent {
	ev := ssm.CommandEvent{Kind: ssm.EventKind(kind), DocumentID: id, CommandID: id, DocumentName: "AWS-RunPatchBaseline",
		InstanceID: "i-0123456789abcdef0", Status: status, RunCount: 0, Folder: ssm.Current,
		PluginStatuses: map[string]string{}, Patch: ssm.PatchRun{IsPatch: true, Operation: "Install", OpensCycle: true}}
	if status != "" {
		ev.PluginStatuses["PatchLinux"] = status
	}
	if kind == string(ssm.Gone) {
		ev.Folder = ""
	}
	return ev
}

var allHooks = map[hooks.Phase][]string{
	hooks.PrePatch: {"10-a", "20-b"}, hooks.PreReboot: {"10-r"}, hooks.PostPatch: {"10-p", "20-q"},
}

func (h *harness) counts(t *testing.T, want map[string]int) {
	t.Helper()
	for k, n := range want {
		if got := h.runner.count(k); got != n {
			t.Errorf("%s ran %d times, want %d", k, got, n)
		}
	}
}

func TestObservedInstallNoReboot(t *testing.T) {
	r := &fakeRunner{hooks: allHooks}
	h := newHarness(t, r)
	h.present("c1", true)
	h.send(install("c1", "seen", "InProgress"))
	h.counts(t, map[string]int{"pre-patch/10-a": 1, "pre-patch/20-b": 1, "post-patch/10-p": 0})
	if st := h.e.Status(); st.Current == nil || st.Current.Phase != PhaseWaiting || st.Current.Trigger != TriggerObserved {
		t.Fatalf("status after pre-patch: %+v", st.Current)
	}
	if v := value(h.e.m.active); v != 1 {
		t.Errorf("patchd_cycle_active = %v", v)
	}
	h.pkgs.set(ledger.Package{Name: "bash", Version: "2", Arch: "amd64"}, ledger.Package{Name: "new", Version: "1"})
	h.present("c1", false)
	h.send(install("c1", "status_changed", "Success"), install("c1", "gone", "Success"))
	h.counts(t, map[string]int{"pre-patch/10-a": 1, "pre-reboot/10-r": 0, "post-patch/10-p": 1, "post-patch/20-q": 1})
	env := r.last("post-patch/10-p")
	if env.Result != "success" || env.Rebooted || env.Attempt != 1 || env.CommandID != "c1" || env.Document != "AWS-RunPatchBaseline" ||
		env.InstanceID != "i-0123456789abcdef0" || env.Operation != "Install" {
		t.Errorf("post-patch env = %+v", env)
	}
	entries, _, err := ledger.Read(filepath.Join(h.dir, ledger.FileName), 0)
	if err != nil || len(entries) != 1 {
		t.Fatalf("ledger: %v %v", entries, err)
	}
	e := entries[0]
	if e.Result != "success" || len(e.Hooks) != 4 || len(e.Packages.Upgraded) != 1 || len(e.Packages.Installed) != 1 || e.Rebooted {
		t.Errorf("ledger entry = %+v", e)
	}
	if v := value(h.e.m.total.WithLabelValues("observed", "success")); v != 1 {
		t.Errorf("cycles_total = %v", v)
	}
	// A late event about the closed document opens nothing.
	h.send(install("c1", "seen", "InProgress"))
	h.counts(t, map[string]int{"pre-patch/10-a": 1})
	// Metrics come back after a restart.
	h.restart()
	if v := value(h.e.m.total.WithLabelValues("observed", "success")); v != 1 {
		t.Errorf("cycles_total after restart = %v", v)
	}
	if v := value(h.e.m.packages.WithLabelValues("upgraded")); v != 1 {
		t.Errorf("packages_changed upgraded = %v", v)
	}
}

func TestInstallWithRebootResumes(t *testing.T) {
	r := &fakeRunner{hooks: allHooks}
	h := newHarness(t, r)
	h.present("c2", true)
	h.send(install("c2", "seen", "InProgress"), install("c2", "status_changed", "SuccessAndReboot"))
	h.counts(t, map[string]int{"pre-patch/10-a": 1, "pre-reboot/10-r": 1, "post-patch/10-p": 0})
	h.restart() // the reboot
	ev := install("c2", "seen", "InProgress")
	ev.RunCount = 1
	h.send(ev)
	h.present("c2", false)
	h.send(install("c2", "gone", "Success"))
	h.counts(t, map[string]int{"pre-patch/10-a": 1, "pre-reboot/10-r": 1, "post-patch/10-p": 1})
	if env := r.last("post-patch/10-p"); !env.Rebooted || env.Result != "success" {
		t.Errorf("post-patch env = %+v", env)
	}
}

func TestDocumentGoneWhilePatchdDown(t *testing.T) {
	r := &fakeRunner{hooks: allHooks}
	h := newHarness(t, r)
	h.present("c3", true)
	h.send(install("c3", "seen", "InProgress"))
	h.stop()
	h.present("c3", false)
	h.start()
	h.flush()
	h.counts(t, map[string]int{"pre-patch/10-a": 1, "post-patch/10-p": 1})
	if env := r.last("post-patch/10-p"); env.Result != "unknown" {
		t.Errorf("result = %q, want unknown (last status InProgress)", env.Result)
	}
}

// The command watcher's first scan decides whether the document left
// while patchd was down; the engine looks at no folder itself. A document
// present at the scan is the watcher's to report when it leaves, even if
// its file is already gone from the disk by the time the engine hears of
// the scan (the start-up race of a file caught half written, then deleted).
func TestDocumentGoneBeforeFirstScan(t *testing.T) {
	r := &fakeRunner{hooks: allHooks}
	h := newHarness(t, r)
	h.present("c9", true)
	h.send(install("c9", "seen", "InProgress"))
	h.noScan = true
	h.restart()
	h.flush()
	h.counts(t, map[string]int{"pre-patch/10-a": 1, "post-patch/10-p": 0})
	// The watcher holds it present (it could not parse it yet); the agent
	// deletes it right after: the engine must wait for the watcher.
	h.present("c9", false)
	h.e.DocumentsScanned([]string{"/agent/i-0123456789abcdef0/document/state/current/c9"})
	h.flush()
	h.counts(t, map[string]int{"post-patch/10-p": 0})
	h.send(ssm.CommandEvent{Kind: ssm.Gone, DocumentID: "c9", InstanceID: "i-0123456789abcdef0"})
	h.counts(t, map[string]int{"pre-patch/10-a": 1, "post-patch/10-p": 1})
	// A later scan report changes nothing: post-patch runs once.
	h.e.DocumentsScanned(nil)
	h.flush()
	h.counts(t, map[string]int{"post-patch/10-p": 1})

	// Absent at the scan: it left unwatched and ends the cycle there.
	h.present("c10", true)
	h.send(install("c10", "seen", "InProgress"))
	h.restart()
	h.flush()
	h.counts(t, map[string]int{"pre-patch/10-a": 2, "post-patch/10-p": 1})
	h.e.DocumentsScanned(nil)
	h.flush()
	h.counts(t, map[string]int{"pre-patch/10-a": 2, "post-patch/10-p": 2})
}

func TestNoHooks(t *testing.T) {
	for _, tc := range []struct {
		name string
		ev   ssm.CommandEvent
	}{
		{"scan", ssm.CommandEvent{Kind: ssm.Seen, DocumentID: "s", DocumentName: "AWS-RunPatchBaseline", Patch: ssm.PatchRun{IsPatch: true, Operation: "Scan"}}},
		{"ansible check", ssm.CommandEvent{Kind: ssm.Seen, DocumentID: "a", DocumentName: "AWS-ApplyAnsiblePlaybooks", Patch: ssm.PatchRun{IsPatch: true, Operation: "Check"}}},
		{"not a patch", ssm.CommandEvent{Kind: ssm.Seen, DocumentID: "x", DocumentName: "AWS-RunShellScript"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := &fakeRunner{hooks: allHooks}
			h := newHarness(t, r)
			h.send(tc.ev)
			tc.ev.Kind = ssm.Gone
			h.send(tc.ev)
			if len(r.runs) != 0 || h.e.Status().Current != nil {
				t.Errorf("runs %v, current %+v", r.runs, h.e.Status().Current)
			}
		})
	}
}

func TestFailedRunAndFailingHooks(t *testing.T) {
	r := &fakeRunner{hooks: allHooks, fail: map[string]int{"pre-patch/10-a": 1, "post-patch/10-p": 2}}
	h := newHarness(t, r)
	h.present("c4", true)
	h.send(install("c4", "seen", "InProgress"))
	// pre-patch stops at its first failure.
	h.counts(t, map[string]int{"pre-patch/10-a": 1, "pre-patch/20-b": 0})
	h.present("c4", false)
	ev := install("c4", "gone", "Failed")
	h.e.Command(ev)
	// post-patch 10-p fails twice: two retries after 1m and 2m of fake time.
	for i := 0; i < 2; i++ {
		if err := h.clock.BlockUntilContext(context.Background(), 2); err != nil { // failsafe timer gone; retry sleeper + nothing
			t.Fatal(err)
		}
		h.clock.Advance(time.Duration(1<<i) * time.Minute)
	}
	h.flush()
	h.counts(t, map[string]int{"post-patch/10-p": 3, "post-patch/20-q": 1})
	if env := r.last("post-patch/10-p"); env.Attempt != 3 || env.Result != "failed" {
		t.Errorf("last post-patch env = %+v", env)
	}
	st := h.e.Status()
	if st.Current != nil || st.Last == nil || st.Last.Result != "failed" {
		t.Errorf("status = %+v", st)
	}
}

func TestFailsafe(t *testing.T) {
	r := &fakeRunner{hooks: allHooks}
	h := newHarness(t, r)
	h.present("c5", true)
	h.send(install("c5", "seen", "InProgress"))
	if err := h.clock.BlockUntilContext(context.Background(), 1); err != nil {
		t.Fatal(err)
	}
	h.clock.Advance(2 * time.Hour)
	h.flush()
	h.counts(t, map[string]int{"post-patch/10-p": 0})
	h.clock.Advance(time.Hour)
	h.flush()
	// The timer fires asynchronously to flush; wait for the close.
	c := make(chan struct{})
	go func() {
		for h.runner.count("post-patch/20-q") == 0 {
			h.flush()
		}
		close(c)
	}()
	select {
	case <-c:
	case <-time.After(30 * time.Second):
		t.Fatal("failsafe did not close the cycle")
	}
	h.flush()
	if env := r.last("post-patch/10-p"); env.Result != "timed_out" {
		t.Errorf("result = %q", env.Result)
	}
	if v := value(h.e.m.total.WithLabelValues("observed", "timed_out")); v != 1 {
		t.Errorf("timed_out total = %v", v)
	}
}

func TestGateAndObservedMerge(t *testing.T) {
	r := &fakeRunner{hooks: allHooks}
	h := newHarness(t, r)
	h.present("gate-doc", true)
	rep := h.e.Gate(context.Background(), GateRequest{Phase: "pre-patch", DocumentID: "gate-doc"})
	if !rep.OK || rep.CycleID == "" || len(rep.Hooks) != 2 {
		t.Fatalf("gate reply = %+v", rep)
	}
	h.present("p1", true)
	h.send(install("p1", "seen", "InProgress"))
	rep2 := h.e.Gate(context.Background(), GateRequest{Phase: "pre-patch"})
	if !rep2.OK || rep2.CycleID != rep.CycleID {
		t.Errorf("second gate = %+v", rep2)
	}
	// The gate's own document ending does not end the adopted patch run.
	h.present("gate-doc", false)
	h.send(ssm.CommandEvent{Kind: ssm.Gone, DocumentID: "gate-doc", DocumentName: "patchd-Patch"})
	h.counts(t, map[string]int{"pre-patch/10-a": 1, "post-patch/10-p": 0})
	h.present("p1", false)
	h.send(install("p1", "gone", "Success"))
	h.counts(t, map[string]int{"pre-patch/10-a": 1, "post-patch/10-p": 1})
	if env := r.last("post-patch/10-p"); env.Trigger != "gate" || env.CommandID != "p1" {
		t.Errorf("env = %+v", env)
	}
	// A post-patch gate after the close reports, runs nothing.
	rep3 := h.e.Gate(context.Background(), GateRequest{Phase: "post-patch"})
	if !rep3.OK || rep3.CycleID != rep.CycleID {
		t.Errorf("late post-patch gate = %+v", rep3)
	}
	h.counts(t, map[string]int{"post-patch/10-p": 1})
}

func TestGateDocumentEndsCycle(t *testing.T) {
	r := &fakeRunner{hooks: allHooks, fail: map[string]int{"pre-patch/20-b": 1}}
	h := newHarness(t, r)
	rep := h.e.Gate(context.Background(), GateRequest{Phase: "pre-patch", DocumentID: "g"})
	if rep.OK || !strings.Contains(rep.Message, "20-b") {
		t.Fatalf("failing pre-patch gate = %+v", rep)
	}
	h.send(ssm.CommandEvent{Kind: ssm.Gone, DocumentID: "g", Status: "Failed"})
	h.counts(t, map[string]int{"post-patch/10-p": 1})
	if env := r.last("post-patch/10-p"); env.Result != "failed" {
		t.Errorf("env = %+v", env)
	}
}

func TestGatePostPatch(t *testing.T) {
	r := &fakeRunner{hooks: allHooks}
	h := newHarness(t, r)
	if rep := h.e.Gate(context.Background(), GateRequest{Phase: "post-patch"}); rep.Error == "" {
		t.Errorf("post-patch with no cycle ever = %+v", rep)
	}
	h.e.Gate(context.Background(), GateRequest{Phase: "pre-patch", WaitForPatch: true, DocumentID: "g"})
	h.send(ssm.CommandEvent{Kind: ssm.Gone, DocumentID: "g"})
	h.counts(t, map[string]int{"post-patch/10-p": 0})
	rep := h.e.Gate(context.Background(), GateRequest{Phase: "post-patch", Result: "success"})
	if !rep.OK || len(rep.Hooks) != 2 {
		t.Errorf("post-patch gate = %+v", rep)
	}
	if env := r.last("post-patch/10-p"); env.Result != "success" || env.Trigger != "gate" {
		t.Errorf("env = %+v", env)
	}
	if rep := h.e.Gate(context.Background(), GateRequest{Phase: "bogus"}); rep.Error == "" {
		t.Error("bogus phase accepted")
	}
}

func TestBackToBack(t *testing.T) {
	r := &fakeRunner{hooks: allHooks}
	h := newHarness(t, r)
	h.present("a", true)
	h.present("b", true)
	h.present("c", true)
	h.send(install("a", "seen", "InProgress"), install("b", "seen", ""), install("c", "seen", ""))
	h.counts(t, map[string]int{"pre-patch/10-a": 1})
	// c runs and ends inside a's cycle: folded into it.
	h.present("c", false)
	h.send(install("c", "gone", "Success"))
	h.present("a", false)
	h.send(install("a", "gone", "Success"))
	// a closed; b opens its own cycle.
	h.counts(t, map[string]int{"pre-patch/10-a": 2, "post-patch/10-p": 1})
	if st := h.e.Status(); st.Current == nil || st.Current.Document.DocumentID != "b" || st.Last.Also[0] != "c" {
		t.Fatalf("status = %+v", st)
	}
	h.present("b", false)
	h.send(install("b", "gone", "Success"))
	h.counts(t, map[string]int{"pre-patch/10-a": 2, "post-patch/10-p": 2})
}

func TestRebootFromLog(t *testing.T) {
	r := &fakeRunner{hooks: allHooks}
	h := newHarness(t, r)
	h.present("c6", true)
	h.send(install("c6", "seen", "InProgress"))
	h.e.Log(agentlog.Event{Kind: agentlog.Reboot, Time: h.clock.Now().Add(-2 * time.Hour), Message: "old line"})
	h.e.Log(agentlog.Event{Kind: agentlog.Reboot, DocumentID: "other"})
	h.flush()
	h.counts(t, map[string]int{"pre-reboot/10-r": 0})
	h.e.Log(agentlog.Event{Kind: agentlog.Reboot, CommandID: "c6", Message: "requested reboot, need to resume"})
	h.e.Log(agentlog.Event{Kind: agentlog.Reboot, CommandID: "c6"})
	h.flush()
	h.counts(t, map[string]int{"pre-reboot/10-r": 1})
}

// TestLogKeepsItsCopy: an event's strings are the log tail's buffer, which
// the next line overwrites once Log returns, while the engine handles the
// event on its own goroutine, from its own copy.
func TestLogKeepsItsCopy(t *testing.T) {
	r := &fakeRunner{hooks: allHooks}
	h := newHarness(t, r)
	h.present("c6", true)
	h.send(install("c6", "seen", "InProgress"))
	c := agentlog.Classifier{Emit: func(e agentlog.Entry) { h.e.Log(e.Event) }}
	reboot := "INFO [ssm-agent-worker] aws.ssm.c6.i-0123456789abcdef0 requested reboot, need to resume"
	c.Feed([]byte(reboot), 0, int64(len(reboot))+1)
	// This line hands the reboot out, then takes the buffer over.
	other := "INFO " + strings.Repeat("z", len(reboot)-len("INFO "))
	c.Feed([]byte(other), 0, int64(len(other))+1)
	h.flush()
	h.counts(t, map[string]int{"pre-reboot/10-r": 1})
}

func TestCrashMidHookReruns(t *testing.T) {
	r := &fakeRunner{hooks: allHooks, block: "pre-patch/20-b", start: make(chan string, 16)}
	h := newHarness(t, r)
	h.present("c7", true)
	h.e.Command(install("c7", "seen", "InProgress"))
	for k := range r.start {
		if k == "pre-patch/20-b" {
			break
		}
	}
	h.stop() // 20-b never finishes: a crash would look the same on disk
	r.mu.Lock()
	r.block, r.start = "", nil
	r.mu.Unlock()
	h.start()
	h.flush()
	h.counts(t, map[string]int{"pre-patch/10-a": 1, "pre-patch/20-b": 2})
	if env := r.last("pre-patch/20-b"); env.Attempt != 2 {
		t.Errorf("attempt = %d, want 2", env.Attempt)
	}
}

func TestPreRebootAtShutdown(t *testing.T) {
	for _, down := range []bool{true, false} {
		t.Run(fmt.Sprint("shutting down ", down), func(t *testing.T) {
			r := &fakeRunner{hooks: allHooks}
			h := newHarness(t, r)
			h.down = shutdownFlag(down)
			h.restart()
			h.present("c8", true)
			h.send(install("c8", "seen", "InProgress"))
			want := time.Duration(0)
			if down {
				want = time.Minute
			}
			if got := h.e.StopExtra(); got != want {
				t.Errorf("StopExtra = %v, want %v", got, want)
			}
			h.stop()
			n := 0
			if down {
				n = 1
			}
			h.counts(t, map[string]int{"pre-reboot/10-r": n})
		})
	}
}

func TestCorruptStateFile(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, FileName), []byte("{not json"), 0o600); err != nil {
		t.Fatal(err)
	}
	st, err := LoadState(filepath.Join(dir, FileName))
	if err == nil || st == nil || st.Current != nil {
		t.Fatalf("LoadState = %+v, %v", st, err)
	}
	if _, err := os.Stat(filepath.Join(dir, FileName+".corrupt")); err != nil {
		t.Errorf("corrupt file not kept aside: %v", err)
	}
}

func TestResultOf(t *testing.T) {
	for _, tc := range []struct {
		status  string
		plugins map[string]string
		corrupt bool
		want    string
	}{
		{"Success", nil, false, "success"},
		{"SuccessAndReboot", nil, false, "success"},
		{"Failed", nil, false, "failed"},
		{"Cancelled", nil, false, "cancelled"},
		{"TimedOut", nil, false, "timed_out"},
		{"InProgress", nil, false, "unknown"},
		{"InProgress", map[string]string{"a": "Success", "b": "Failed"}, false, "failed"},
		{"InProgress", map[string]string{"a": "Success", "b": "InProgress"}, false, "unknown"},
		{"Success", nil, true, "unknown"},
	} {
		if got := resultOf(tc.status, tc.plugins, tc.corrupt); got != tc.want {
			t.Errorf("resultOf(%q, %v, %v) = %q, want %q", tc.status, tc.plugins, tc.corrupt, got, tc.want)
		}
	}
}

// value reads a gauge or counter.
func value(c prometheus.Metric) float64 {
	var m dto.Metric
	if err := c.Write(&m); err != nil {
		return -1
	}
	if m.Gauge != nil {
		return m.Gauge.GetValue()
	}
	return m.Counter.GetValue()
}

func TestRefusedHooks(t *testing.T) {
	r := &fakeRunner{hooks: map[hooks.Phase][]string{
		hooks.PrePatch: {"10-ok", "refused-20"}, hooks.PostPatch: {"refused-10", "20-ok"},
	}}
	h := newHarness(t, r)
	rep := h.e.Gate(context.Background(), GateRequest{Phase: "pre-patch", WaitForPatch: true})
	if rep.OK || len(rep.Hooks) != 2 || rep.Hooks[1].Outcome != "refused" {
		t.Fatalf("a refused pre-patch hook must fail the gate: %+v", rep)
	}
	rep = h.e.Gate(context.Background(), GateRequest{Phase: "post-patch"})
	if rep.OK {
		t.Errorf("post-patch with a refused hook reported OK: %+v", rep)
	}
	// Refusals go through the runner once each (its metrics), never retried.
	h.counts(t, map[string]int{"pre-patch/10-ok": 1, "pre-patch/refused-20": 1, "post-patch/refused-10": 1, "post-patch/20-ok": 1})
}

// An association's state file has no command id; its document id is
// "<AssociationID>.<RunID>". Hooks and the ledger must say so alike.
func TestAssociationIDs(t *testing.T) {
	r := &fakeRunner{hooks: allHooks}
	h := newHarness(t, r)
	const assoc, docID = "6f1c0e2a-5b1e-4c0f-9f61-0c3c2b7d9a11", "6f1c0e2a-5b1e-4c0f-9f61-0c3c2b7d9a11.8d2b4c6e-1111-4a2b-9c3d-5e6f7a8b9c0d"
	h.present(docID, true)
	seen := install(docID, "seen", "InProgress")
	seen.CommandID, seen.AssociationID = "", assoc
	h.send(seen)
	h.present(docID, false)
	gone := install(docID, "gone", "Success")
	gone.CommandID, gone.AssociationID = "", assoc
	h.send(gone)
	for _, key := range []string{"pre-patch/10-a", "post-patch/10-p"} {
		env := r.last(key)
		if env.CommandID != "" || env.AssociationID != assoc || env.DocumentID != docID {
			t.Errorf("%s: command id %q, association id %q, document id %q", key, env.CommandID, env.AssociationID, env.DocumentID)
		}
		vars := strings.Join(env.Environ(), "\n")
		for _, want := range []string{"PATCHD_COMMAND_ID=\n", "PATCHD_ASSOCIATION_ID=" + assoc + "\n", "PATCHD_DOCUMENT_ID=" + docID + "\n"} {
			if !strings.Contains(vars+"\n", want) {
				t.Errorf("%s: environment lacks %q", key, want)
			}
		}
	}
	entries, _, err := ledger.Read(filepath.Join(h.dir, ledger.FileName), 0)
	if err != nil || len(entries) != 1 {
		t.Fatalf("ledger: %v %v", entries, err)
	}
	if e := entries[0]; e.CommandID != "" || e.AssociationID != assoc || e.DocumentID != docID {
		t.Errorf("ledger: command id %q, association id %q, document id %q", e.CommandID, e.AssociationID, e.DocumentID)
	}
}

// A gate cycle that adopted no document knows only the gate's document id;
// what kind of id it is follows from its form.
func TestGateDocumentIDs(t *testing.T) {
	for _, tc := range []struct{ doc, cmd, assoc string }{
		{"0b1c2d3e-aaaa-4bbb-8ccc-0d1e2f3a4b5c", "0b1c2d3e-aaaa-4bbb-8ccc-0d1e2f3a4b5c", ""},
		{"assoc-1.run-2", "", "assoc-1"},
	} {
		c := &Cycle{GateDocumentID: tc.doc}
		d, cmd, assoc := documentIDs(c)
		if d != tc.doc || cmd != tc.cmd || assoc != tc.assoc {
			t.Errorf("%s: got %q %q %q", tc.doc, d, cmd, assoc)
		}
	}
}

// Issue #14's first case by hand: the reboot was asked for, patchd was down
// while the agent resumed the document, failed it and deleted it. The last
// status seen, SuccessAndReboot, is not final: the result is unknown, with
// why, for the hooks and the ledger.
func TestUnwatchedEndAfterRebootIsUnknown(t *testing.T) {
	r := &fakeRunner{hooks: allHooks}
	h := newHarness(t, r)
	h.present("c7", true)
	h.send(install("c7", "seen", "InProgress"), install("c7", "status_changed", "SuccessAndReboot"))
	h.stop()
	h.present("c7", false)
	h.start()
	h.flush()
	h.counts(t, map[string]int{"pre-reboot/10-r": 1, "post-patch/10-p": 1})
	env := r.last("post-patch/10-p")
	if env.Result != ResultUnknown || !strings.Contains(env.ResultReason, "SuccessAndReboot") || !strings.Contains(env.ResultReason, "not watching") {
		t.Errorf("post-patch told %q (%q), want unknown and why", env.Result, env.ResultReason)
	}
	if !strings.Contains(strings.Join(env.Environ(), "\n"), "PATCHD_RESULT_REASON="+env.ResultReason) {
		t.Errorf("PATCHD_RESULT_REASON not in the hook's environment")
	}
	entries, _, _ := ledger.Read(filepath.Join(h.dir, ledger.FileName), 0)
	if len(entries) != 1 || entries[0].Result != ResultUnknown || entries[0].ResultReason != env.ResultReason {
		t.Errorf("ledger: %+v", entries)
	}
	if v := value(h.e.m.total.WithLabelValues("observed", "unknown")); v != 1 {
		t.Errorf("cycles_total{result=unknown} = %v", v)
	}
}

// The agent's log names the final status when it cleans the orchestration
// folder up; that is evidence when the state file's final write was missed.
func TestResultFromAgentLog(t *testing.T) {
	r := &fakeRunner{hooks: allHooks}
	h := newHarness(t, r)
	h.present("c8", true)
	h.send(install("c8", "seen", "InProgress"))
	h.e.Log(agentlog.Event{Kind: agentlog.Other, DocumentID: "c8",
		Message: "[ssm-document-worker] [c8] orchestration cleanup started for the command with status Failed - deleting orchestration directory: /var/lib/amazon/ssm/i-0123456789abcdef0/document/orchestration/c8"})
	h.flush()
	h.present("c8", false)
	h.send(install("c8", "gone", "InProgress"))
	env := r.last("post-patch/10-p")
	if env.Result != ResultFailed || !strings.Contains(env.ResultReason, "agent's log") {
		t.Errorf("post-patch told %q (%q), want failed from the agent's log", env.Result, env.ResultReason)
	}
	// Which folder belongs to which document: a command's is named after
	// its id, an association's is <AssociationID>/<RunID>.
	for _, tc := range []struct {
		dir  string
		doc  Document
		want bool
	}{
		{"/var/lib/amazon/ssm/i-1/document/orchestration/c8", Document{DocumentID: "c8", CommandID: "c8"}, true},
		{"/var/lib/amazon/ssm/i-1/document/orchestration/other", Document{DocumentID: "c8", CommandID: "c8"}, false},
		{"/var/lib/amazon/ssm/i-1/document/orchestration/assoc-1/run-2", Document{DocumentID: "assoc-1.run-2", AssociationID: "assoc-1"}, true},
		{"/var/lib/amazon/ssm/i-1/document/orchestration/assoc-1/run-3", Document{DocumentID: "assoc-1.run-2", AssociationID: "assoc-1"}, false},
	} {
		if got := orchestrationOf(tc.dir, tc.doc); got != tc.want {
			t.Errorf("orchestrationOf(%s, %s) = %v", tc.dir, tc.doc.DocumentID, got)
		}
	}
}

// One phase policy (hooks.RunHooks) for the CLI and the daemon: after a
// pre-patch failure the rest are reported not_run, as `patchd hooks run`
// reports them, in the ledger and the gate's answer.
func TestPrePatchFailureReportsRestNotRun(t *testing.T) {
	r := &fakeRunner{hooks: map[hooks.Phase][]string{hooks.PrePatch: {"10-a", "20-b", "30-c"}, hooks.PostPatch: {"10-p"}},
		fail: map[string]int{"pre-patch/10-a": 1}}
	h := newHarness(t, r)
	h.present("c11", true)
	h.send(install("c11", "seen", "InProgress"))
	h.present("c11", false)
	h.send(install("c11", "gone", "Success"))
	h.counts(t, map[string]int{"pre-patch/10-a": 1, "pre-patch/20-b": 0, "pre-patch/30-c": 0, "post-patch/10-p": 1})
	entries, _, err := ledger.Read(filepath.Join(h.dir, ledger.FileName), 0)
	if err != nil || len(entries) != 1 {
		t.Fatalf("ledger: %v %v", entries, err)
	}
	got := map[string]string{}
	for _, hr := range entries[0].Hooks {
		got[hr.Phase+"/"+hr.Name] = hr.Outcome
	}
	want := map[string]string{"pre-patch/10-a": "failed", "pre-patch/20-b": "not_run", "pre-patch/30-c": "not_run", "post-patch/10-p": "success"}
	if !maps.Equal(got, want) {
		t.Errorf("ledger hooks %v, want %v", got, want)
	}
}

// A hook that traps the stop's SIGTERM and exits non-zero has finished
// (the runner says so: not Interrupted): it is not run again after the
// restart, and its failure counts once.
func TestHookTrappingStopIsNotRunAgain(t *testing.T) {
	r := &fakeRunner{hooks: allHooks, trap: "pre-patch/20-b", start: make(chan string, 16)}
	h := newHarness(t, r)
	h.present("c12", true)
	h.e.Command(install("c12", "seen", "InProgress"))
	for k := range r.start {
		if k == "pre-patch/20-b" {
			break
		}
	}
	h.stop()
	r.mu.Lock()
	r.trap, r.start = "", nil
	r.mu.Unlock()
	h.start()
	h.flush()
	h.counts(t, map[string]int{"pre-patch/10-a": 1, "pre-patch/20-b": 1})
	st := h.e.Status()
	if st.Current == nil {
		t.Fatal("no open cycle")
	}
	pp := st.Current.Phases[PhasePrePatch]
	if pp == nil || !pp.Done || !pp.Failed || len(pp.Hooks) != 2 || pp.Hooks[1].Outcome != "failed" || pp.Hooks[1].ExitCode != 143 || pp.Hooks[1].Attempt != 1 {
		t.Errorf("pre-patch state: %+v", pp)
	}
}

// The clean-up line as the simulated agent writes it (the agent's format)
// is the one patchd reads the final status from.
func TestCleanupLineFromTheAgentsLog(t *testing.T) {
	root, logs := t.TempDir(), t.TempDir()
	a := ssmsim.New(root, "i-0123456789abcdef0", logs)
	a.OrchestrationCleanup = "clean-success-failed"
	must(t, a.Init())
	d, err := a.Submit(ssmsim.RunPatchBaseline("Install", "NoReboot"))
	must(t, err)
	must(t, d.Run(ssm.StatusFailed, false, nil))
	data, err := os.ReadFile(filepath.Join(logs, "amazon-ssm-agent.log"))
	must(t, err)
	found := false
	for _, raw := range strings.Split(string(data), "\n") {
		l := agentlog.ParseLine([]byte(raw))
		if status, dir, ok := cleanupStatus(agentlog.Event{Message: string(l.Msg)}); ok {
			found = true
			if status != ssm.StatusFailed || !orchestrationOf(dir, Document{DocumentID: d.ID(), CommandID: d.ID()}) {
				t.Errorf("clean-up line read as %s for %s, want Failed for %s: %s", status, dir, d.ID(), raw)
			}
		}
	}
	if !found {
		t.Errorf("no clean-up line read from the agent's log:\n%s", data)
	}
}

// A gate's answer needs the open-time package snapshot (the patch must not
// start before it), but not the delay that only makes way for the first
// hooks: once pre-patch is done the snapshot is taken at once. Before, every
// gate round paid the whole delay.
func TestGateDoesNotWaitOutTheSnapshotDelay(t *testing.T) {
	r := &fakeRunner{hooks: allHooks}
	h := newHarness(t, r)
	h.snapDelay = time.Hour
	h.restart()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	rep := h.e.Gate(ctx, GateRequest{Phase: "pre-patch", DocumentID: "g"})
	if !rep.OK {
		t.Fatalf("pre-patch gate with a one-hour snapshot delay = %+v, want an answer once the hooks are done", rep)
	}
	h.flush()
	st, err := LoadState(filepath.Join(h.dir, FileName))
	if err != nil {
		t.Fatal(err)
	}
	if st.Current == nil || len(st.Current.Packages) != 1 {
		t.Fatalf("open cycle after the gate = %+v, want the snapshot's one package in it", st.Current)
	}
}
