package ssm_test

import (
	"bytes"
	"context"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jonboulle/clockwork"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/patchd/patchd/agent/ssm"
	"github.com/patchd/patchd/agent/ssm/ssmsim"
)

// eventWait bounds every wait for an event; generous because other test
// packages load the machine at the same time.
const eventWait = 20 * time.Second

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

type harness struct {
	t      *testing.T
	w      *ssm.Watcher
	reg    *prometheus.Registry
	log    *syncBuffer
	msgs   chan string // every log message, in order
	events chan ssm.CommandEvent
	cancel context.CancelFunc
	done   chan error
	once   sync.Once
}

func startWatcher(t *testing.T, root string, patterns []string, opts ...ssm.Option) *harness {
	t.Helper()
	h := &harness{t: t, reg: prometheus.NewRegistry(), log: &syncBuffer{}, msgs: make(chan string, 10000),
		events: make(chan ssm.CommandEvent, 1000), done: make(chan error, 1)}
	logger := slog.New(teeHandler{slog.NewTextHandler(h.log, &slog.HandlerOptions{Level: slog.LevelDebug}), h.msgs})
	started := make(chan struct{})
	opts = append(opts, ssm.WithStarted(func() { close(started) }))
	h.w = ssm.NewWatcher(root, patterns, logger, h.reg, func(ev ssm.CommandEvent) { h.events <- ev }, opts...)
	ctx, cancel := context.WithCancel(context.Background())
	h.cancel = cancel
	go func() { h.done <- h.w.Run(ctx) }()
	t.Cleanup(h.stop)
	select {
	case <-started:
	case err := <-h.done:
		t.Fatalf("Run returned at start: %v", err)
	case <-time.After(eventWait):
		t.Fatalf("watcher not started within %s", eventWait)
	}
	return h
}

// stop ends Run and waits for it; safe to call twice.
func (h *harness) stop() {
	h.once.Do(func() {
		h.cancel()
		select {
		case err := <-h.done:
			if err != nil {
				h.t.Errorf("Run: %v", err)
			}
		case <-time.After(eventWait):
			h.t.Errorf("Run did not return after cancel")
		}
	})
}

// teeHandler passes records on and sends each message to a channel, so a
// test can wait for a log line instead of sleeping.
type teeHandler struct {
	slog.Handler
	msgs chan<- string
}

func (h teeHandler) Handle(ctx context.Context, r slog.Record) error {
	select {
	case h.msgs <- r.Message:
	default:
	}
	return h.Handler.Handle(ctx, r)
}

// waitLog waits for a log message that starts with prefix.
func (h *harness) waitLog(prefix string) {
	h.t.Helper()
	deadline := time.After(eventWait)
	for {
		select {
		case m := <-h.msgs:
			if strings.HasPrefix(m, prefix) {
				return
			}
		case <-deadline:
			h.t.Fatalf("no log message %q within %s:\n%s", prefix, eventWait, h.log.String())
		}
	}
}

// next returns the next event and checks its kind and folder (unless kind
// is "") and its document (unless docID is "").
func (h *harness) next(kind ssm.EventKind, folder ssm.Folder, docID string) ssm.CommandEvent {
	h.t.Helper()
	select {
	case ev := <-h.events:
		if (kind != "" && (ev.Kind != kind || ev.Folder != folder)) || (docID != "" && ev.DocumentID != docID) {
			h.t.Fatalf("event %s folder %q doc %s (status %s, steps %v), want %s folder %q doc %s\nlog:\n%s",
				ev.Kind, ev.Folder, ev.DocumentID, ev.Status, ev.PluginStatuses, kind, folder, docID, h.log.String())
		}
		return ev
	case <-time.After(eventWait):
		h.t.Fatalf("no %s event for %s within %s\nlog:\n%s", kind, docID, eventWait, h.log.String())
	}
	return ssm.CommandEvent{}
}

func newAgent(t *testing.T, root string) *ssmsim.Agent {
	t.Helper()
	a := ssmsim.New(root, "i-0a1b2c3d4e5f60718", "")
	return a
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

func submit(t *testing.T, a *ssmsim.Agent, s ssmsim.Spec) *ssmsim.Doc {
	t.Helper()
	d, err := a.Submit(s)
	must(t, err)
	return d
}

func TestWatcherReportsFilesAlreadyThereAtStart(t *testing.T) {
	root := t.TempDir()
	a := newAgent(t, root)
	must(t, a.Init())
	pending := submit(t, a, ssmsim.RunPatchBaseline("Install", "NoReboot"))
	running := submit(t, a, ssmsim.RunPatchBaseline("Install", "RebootIfNeeded"))
	must(t, running.Start())
	must(t, running.RunStep(""))
	must(t, running.RequestReboot(""))
	broken := submit(t, a, ssmsim.RunShellScript("true"))
	must(t, broken.Start())
	must(t, broken.Corrupt())
	// A stale instance folder (the node was re-registered) is watched too.
	old := ssmsim.New(root, "mi-0123456789abcdef0", "")
	must(t, old.Init())
	stale := submit(t, old, ssmsim.RunShellScript("true"))

	h := startWatcher(t, root, nil)
	// Start-up order is by instance and document id; collect, then check.
	got := map[string]ssm.CommandEvent{}
	for range 3 {
		select {
		case ev := <-h.events:
			got[ev.DocumentID] = ev
		case <-time.After(eventWait):
			t.Fatalf("only %d start-up events:\n%s", len(got), h.log.String())
		}
	}
	if ev := got[pending.ID()]; ev.Kind != ssm.Seen || ev.Folder != ssm.Pending || !ev.Patch.OpensCycle {
		t.Errorf("pending document: %+v", ev)
	}
	ev := got[running.ID()]
	if ev.Kind != ssm.Seen || ev.Folder != ssm.Current || ev.Status != "SuccessAndReboot" || ev.PluginStatuses["PatchLinux"] != "SuccessAndReboot" {
		t.Errorf("document waiting for its reboot: %+v", ev)
	}
	if ev.Path != running.Path() || ev.InstanceID != a.InstanceID || ev.CommandID != running.ID() ||
		ev.MessageID != "aws.ssm."+running.ID()+"."+a.InstanceID || ev.DocumentType != "SendCommand" || ev.OrchestrationDirectory == "" {
		t.Errorf("event identity: %+v", ev)
	}
	if ev := got[stale.ID()]; ev.InstanceID != "mi-0123456789abcdef0" || ev.Patch.IsPatch {
		t.Errorf("stale instance folder document: %+v", ev)
	}
	if _, ok := got[broken.ID()]; ok {
		t.Errorf("a file already in corrupt/ at start was reported")
	}
	want := []string{filepath.Join(root, "i-0a1b2c3d4e5f60718"), filepath.Join(root, "mi-0123456789abcdef0")}
	if w := h.w.Watched(); strings.Join(w, ",") != strings.Join(want, ",") {
		t.Errorf("Watched() = %v, want %v", w, want)
	}
	if v := metricValue(t, h.reg, "patchd_agent_commands_seen_total", "current"); v != 1 {
		t.Errorf("seen{current} = %v, want 1", v)
	}
	if v := metricValue(t, h.reg, "patchd_agent_commands_seen_total", "pending"); v != 2 {
		t.Errorf("seen{pending} = %v, want 2", v)
	}
}

func TestWatcherInstanceFolderCreatedAfterStart(t *testing.T) {
	root := t.TempDir()
	h := startWatcher(t, root, nil)
	a := newAgent(t, root)
	must(t, a.Init())
	d := submit(t, a, ssmsim.RunPatchBaseline("Install", "NoReboot"))
	h.next(ssm.Seen, ssm.Pending, d.ID())
	must(t, d.Start())
	h.next(ssm.Seen, ssm.Current, d.ID())
	if w := h.w.Watched(); len(w) != 1 || w[0] != filepath.Join(root, a.InstanceID) {
		t.Errorf("Watched() = %v", w)
	}
}

func TestWatcherDataDirectoryCreatedAfterStart(t *testing.T) {
	base := t.TempDir()
	root := filepath.Join(base, "var", "lib", "amazon", "ssm")
	must(t, os.MkdirAll(filepath.Join(base, "var"), 0o755))
	h := startWatcher(t, root, nil)
	// The agent is installed: its package creates the tree, then it starts.
	a := newAgent(t, root)
	must(t, a.Init())
	d := submit(t, a, ssmsim.RunPatchBaseline("Install", "NoReboot"))
	must(t, d.Start())
	// Depending on how fast the watches follow the new tree, the document
	// is first seen in pending/ or already in current/.
	ev := h.next("", "", d.ID())
	if ev.Kind == ssm.Seen && ev.Folder == ssm.Pending {
		ev = h.next(ssm.Seen, ssm.Current, d.ID())
	}
	if ev.Kind != ssm.Seen || ev.Folder != ssm.Current || ev.DocumentID != d.ID() {
		t.Fatalf("event %+v", ev)
	}
	if n := strings.Count(h.log.String(), "waiting for amazon-ssm-agent's data directory "+root); n != 1 {
		t.Errorf("waiting message logged %d times, want once:\n%s", n, h.log.String())
	}
	if v := metricValue(t, h.reg, "patchd_agent_data_watched", ""); v != 1 {
		t.Errorf("patchd_agent_data_watched = %v after the directory appeared", v)
	}
}

func TestWatcherWaitingGaugeIsZeroWithoutDataDirectory(t *testing.T) {
	root := filepath.Join(t.TempDir(), "missing", "ssm")
	reg := prometheus.NewRegistry()
	w := ssm.NewWatcher(root, nil, slog.New(slog.DiscardHandler), reg, func(ssm.CommandEvent) {})
	l, err := ssm.StartLoop(w)
	must(t, err)
	defer l.Close()
	if v := metricValue(t, reg, "patchd_agent_data_watched", ""); v != 0 {
		t.Errorf("patchd_agent_data_watched = %v without the directory", v)
	}
	mfs, err := reg.Gather()
	must(t, err)
	n := 0
	for _, mf := range mfs {
		n += len(mf.GetMetric())
	}
	if n != 4 {
		t.Errorf("metrics: %d series, want 4 (seen{pending,current}, parse errors, watched)", n)
	}
}

// A patch run with a reboot, patchd stopped across the reboot as it is on
// the real host.
func TestWatcherRebootLifecycle(t *testing.T) {
	root := t.TempDir()
	a := newAgent(t, root)
	must(t, a.Init())
	h := startWatcher(t, root, nil)
	d := submit(t, a, ssmsim.RunPatchBaseline("Install", "RebootIfNeeded"))
	ev := h.next(ssm.Seen, ssm.Pending, d.ID())
	if !ev.Patch.IsPatch || ev.Patch.Operation != "Install" || !ev.Patch.OpensCycle || ev.RunCount != 0 {
		t.Fatalf("seen: %+v", ev)
	}
	must(t, d.Start()) // rename, then a rewrite with ProcInfo: one event
	h.next(ssm.Seen, ssm.Current, d.ID())
	must(t, d.RunStep(""))
	ev = h.next(ssm.StatusChanged, ssm.Current, d.ID())
	if ev.PluginStatuses["PatchLinux"] != "InProgress" || ev.PluginStatuses["PatchWindows"] != "Skipped" {
		t.Fatalf("step started: %v", ev.PluginStatuses)
	}
	// Rewrites without a status change emit nothing: the next event is the
	// reboot request.
	must(t, d.Rewrite())
	must(t, d.Rewrite())
	must(t, d.RequestReboot(""))
	ev = h.next(ssm.StatusChanged, ssm.Current, d.ID())
	if ev.Status != "SuccessAndReboot" || ev.PluginStatuses["PatchLinux"] != "SuccessAndReboot" {
		t.Fatalf("reboot request: %+v", ev)
	}

	h.stop() // the host goes down; the file stays in current/
	h = startWatcher(t, root, nil)
	ev = h.next(ssm.Seen, ssm.Current, d.ID())
	if ev.Status != "SuccessAndReboot" || ev.RunCount != 0 {
		t.Fatalf("after restart: %+v", ev)
	}
	must(t, d.Resume()) // RunCount+1 written, then the step runs again
	ev = h.next(ssm.StatusChanged, ssm.Current, d.ID())
	if ev.RunCount != 1 {
		t.Fatalf("resume: %+v", ev)
	}
	// The two writes may be read as one.
	if ev.PluginStatuses["PatchLinux"] != "InProgress" {
		ev = h.next(ssm.StatusChanged, ssm.Current, d.ID())
	}
	if ev.RunCount != 1 || ev.Status != "InProgress" || ev.PluginStatuses["PatchLinux"] != "InProgress" {
		t.Fatalf("step re-run: %+v", ev)
	}
	must(t, d.Finish("Success"))
	// The agent writes the final status and deletes the file right after;
	// the final status is still reported, then Gone with it.
	ev = h.next(ssm.StatusChanged, ssm.Current, d.ID())
	if ev.Status != "Success" || ev.PluginStatuses["PatchLinux"] != "Success" {
		t.Fatalf("final status: %+v", ev)
	}
	ev = h.next(ssm.Gone, "", d.ID())
	if ev.Status != "Success" || ev.RunCount != 1 || ev.DocumentName != "AWS-RunPatchBaseline" || !ev.Patch.OpensCycle {
		t.Fatalf("gone carries the last status: %+v", ev)
	}
}

// The agent's default executer writes the state file only at the start
// and the end of a run, and deletes it right after the end. Every status
// is still seen, the final one included.
func TestWatcherAgentWritesOnlyAtStartAndEnd(t *testing.T) {
	root := t.TempDir()
	a := newAgent(t, root)
	a.SaveAtEndOnly = true
	must(t, a.Init())
	h := startWatcher(t, root, nil)
	for _, tc := range []struct {
		status string
		reboot bool
	}{{"Success", true}, {"Failed", false}, {"Success", false}, {"TimedOut", false}} {
		d := submit(t, a, ssmsim.RunPatchBaseline("Install", "RebootIfNeeded"))
		h.next(ssm.Seen, ssm.Pending, d.ID())
		must(t, d.Start())
		h.next(ssm.Seen, ssm.Current, d.ID())
		must(t, d.RunStep(""))
		if tc.reboot {
			must(t, d.RequestReboot(""))
			if ev := h.next(ssm.StatusChanged, ssm.Current, d.ID()); ev.Status != "SuccessAndReboot" {
				t.Fatalf("reboot: %+v", ev)
			}
			must(t, d.Resume())
			// RunCount+1, the status is the reboot's until the end.
			if ev := h.next(ssm.StatusChanged, ssm.Current, d.ID()); ev.RunCount != 1 || ev.Status != "SuccessAndReboot" {
				t.Fatalf("resume: %+v", ev)
			}
		}
		must(t, d.Finish(tc.status))
		if ev := h.next(ssm.StatusChanged, ssm.Current, d.ID()); ev.Status != tc.status || ev.PluginStatuses["PatchLinux"] != tc.status {
			t.Fatalf("final status: %+v", ev)
		}
		if ev := h.next(ssm.Gone, "", d.ID()); ev.Status != tc.status {
			t.Fatalf("gone: %+v", ev)
		}
	}
}

func TestWatcherFailedRunAndMoveToCorrupt(t *testing.T) {
	root := t.TempDir()
	a := newAgent(t, root)
	must(t, a.Init())
	h := startWatcher(t, root, nil)
	d := submit(t, a, ssmsim.RunPatchBaseline("Install", "NoReboot"))
	h.next(ssm.Seen, ssm.Pending, d.ID())
	must(t, d.Start())
	h.next(ssm.Seen, ssm.Current, d.ID())
	must(t, d.Corrupt())
	ev := h.next(ssm.Gone, ssm.Corrupt, d.ID())
	if ev.Path != filepath.Join(a.StateDir(ssm.Corrupt), d.ID()) {
		t.Errorf("path %s", ev.Path)
	}

	f := submit(t, a, ssmsim.RunPatchBaseline("Install", "NoReboot"))
	h.next(ssm.Seen, ssm.Pending, f.ID())
	must(t, f.Run("Failed", false, nil))
	// Every status seen is an event; the run ends with Gone carrying
	// Failed. The simulated run is faster than the watcher's scans, so it
	// may be seen in current/ or only in pending/ before it leaves.
	for {
		ev := h.next("", "", f.ID())
		if ev.Kind == ssm.Gone {
			if ev.Folder != "" || ev.Status != "Failed" || ev.PluginStatuses["PatchLinux"] != "Failed" {
				t.Errorf("failed run ends with %+v", ev)
			}
			break
		}
	}
}

// fakeRetries is a short, deterministic retry schedule on a fake clock.
func fakeRetries(fc *clockwork.FakeClock) []ssm.Option {
	return []ssm.Option{ssm.WithClock(fc), ssm.WithRetry(3, 10*time.Millisecond, 40*time.Millisecond)}
}

// drainRetries lets every scheduled retry fire.
func drainRetries(t *testing.T, h *harness, fc *clockwork.FakeClock, n int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), eventWait)
	defer cancel()
	for i := range n {
		if err := fc.BlockUntilContext(ctx, 1); err != nil {
			t.Fatalf("no retry timer armed for retry %d: %v\n%s", i+1, err, h.log.String())
		}
		fc.Advance(time.Second)
	}
}

func TestWatcherUnparseableFileLoggedOnceAndSkipped(t *testing.T) {
	root := t.TempDir()
	a := newAgent(t, root)
	must(t, a.Init())
	fc := clockwork.NewFakeClock()
	h := startWatcher(t, root, nil, fakeRetries(fc)...)
	const id = "0c1d2e3f-aaaa-4bbb-8ccc-000000000001"
	bad := filepath.Join(a.StateDir(ssm.Current), id)
	for i, content := range []string{"{\"DocumentInformation\": [not json\n", "garbage\n"} {
		// Written (again), broken: tried until the schedule ends; the error
		// is logged the first time only.
		must(t, os.WriteFile(bad, []byte(content), 0o600))
		// A good document behind it: once it is seen, every notification
		// of the broken file has been handled, so the retries can be counted.
		d := submit(t, a, ssmsim.RunPatchBaseline("Scan", "NoReboot"))
		if ev := h.next(ssm.Seen, ssm.Pending, d.ID()); ev.Patch.OpensCycle {
			t.Errorf("Scan opens a cycle: %+v", ev.Patch)
		}
		drainRetries(t, h, fc, 3)
		h.waitLog("state file still unparseable after retries")
		if v := metricValue(t, h.reg, "patchd_agent_state_parse_errors_total", ""); v != 1 {
			t.Errorf("write %d: parse errors = %v, want 1", i+1, v)
		}
	}
	log := h.log.String()
	if n := strings.Count(log, "cannot parse amazon-ssm-agent's state file"); n != 1 || !strings.Contains(log, bad) {
		t.Errorf("parse error logged %d times (want once, with the path):\n%s", n, log)
	}
	// Fixed later: now it is seen.
	d := a.Build(ssmsim.RunPatchBaseline("Install", "NoReboot"))
	must(t, os.WriteFile(bad, mustMarshal(t, d), 0o600))
	ev := h.next(ssm.Seen, ssm.Current, id)
	if ev.DocumentName != "AWS-RunPatchBaseline" || !ev.Patch.OpensCycle {
		t.Errorf("repaired file: %+v", ev)
	}
}

func mustMarshal(t *testing.T, d *ssmsim.Doc) []byte {
	t.Helper()
	b, err := d.State.Marshal()
	must(t, err)
	return b
}

func TestWatcherHalfWrittenFileThenCompleted(t *testing.T) {
	root := t.TempDir()
	a := newAgent(t, root)
	must(t, a.Init())
	fc := clockwork.NewFakeClock()
	h := startWatcher(t, root, nil, fakeRetries(fc)...)
	d := submit(t, a, ssmsim.RunPatchBaseline("Install", "NoReboot"))
	h.next(ssm.Seen, ssm.Pending, d.ID())
	must(t, d.Start())
	h.next(ssm.Seen, ssm.Current, d.ID())
	must(t, d.RunStep(""))
	h.next(ssm.StatusChanged, ssm.Current, d.ID())
	// The agent truncates and writes in place: a reader can see an empty
	// file, then half of it, then all of it. Only the complete status is
	// an event, and no error is logged.
	d.State.InstancePluginsInformation[1].Result.Status = "Failed"
	must(t, os.Truncate(d.Path(), 0))
	must(t, d.WritePartial(len(mustMarshal(t, d))/3))
	must(t, d.Rewrite())
	ev := h.next(ssm.StatusChanged, ssm.Current, d.ID())
	if ev.PluginStatuses["PatchLinux"] != "Failed" {
		t.Fatalf("completed file: %+v", ev)
	}
	// A new document that appears half written in current/ and is then
	// completed: one Seen, nothing logged.
	n := a.Build(ssmsim.RunPatchBaseline("Install", "NoReboot"))
	n.Folder = ssm.Current
	must(t, n.WritePartial(100))
	must(t, n.Rewrite())
	h.next(ssm.Seen, ssm.Current, n.ID())
	if strings.Contains(h.log.String(), "cannot parse") || metricValue(t, h.reg, "patchd_agent_state_parse_errors_total", "") != 0 {
		t.Errorf("a half-written file was reported as unparseable:\n%s", h.log.String())
	}
}

// metricValue reads one series from reg: the one whose only label has
// value label, or the unlabelled one for "".
func metricValue(t *testing.T, reg *prometheus.Registry, name, label string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	must(t, err)
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			if label != "" && (len(m.GetLabel()) != 1 || m.GetLabel()[0].GetValue() != label) {
				continue
			}
			switch {
			case m.GetCounter() != nil:
				return m.GetCounter().GetValue()
			case m.GetGauge() != nil:
				return m.GetGauge().GetValue()
			}
		}
	}
	t.Fatalf("no series %s{%s}", name, label)
	return 0
}

func TestWatcherClassifiesWhatItSees(t *testing.T) {
	root := t.TempDir()
	a := newAgent(t, root)
	must(t, a.Init())
	h := startWatcher(t, root, []string{"Other-*"})
	custom := ssmsim.RunShellScript("yum -y update")
	custom.DocumentName = "Acme-PatchFleet"
	for _, tc := range []struct {
		name     string
		spec     ssmsim.Spec
		patterns []string // set before the submit when not nil
		isPatch  bool
		op       string
		opens    bool
	}{
		{"install", ssmsim.RunPatchBaseline("Install", "RebootIfNeeded"), nil, true, "Install", true},
		{"scan", ssmsim.RunPatchBaseline("Scan", "NoReboot"), nil, true, "Scan", false},
		{"association", ssmsim.RunPatchBaselineAssociation("3c5d7e9f-1a2b-4c3d-8e4f-5a6b7c8d9e0f", "Install", "NoReboot"), nil, true, "Install", true},
		{"ansible check", ssmsim.ApplyAnsiblePlaybooks(true), nil, true, "Check", false},
		{"ansible apply", ssmsim.ApplyAnsiblePlaybooks(false), nil, true, "Apply", true},
		{"shell script", ssmsim.RunShellScript("echo hi"), nil, false, "", false},
		{"custom before reload", custom, nil, false, "", false},
		{"custom after reload", custom, []string{"Acme-*"}, true, "Install", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if tc.patterns != nil {
				h.w.SetPatterns(tc.patterns)
			}
			d := submit(t, a, tc.spec)
			ev := h.next(ssm.Seen, ssm.Pending, d.ID())
			if ev.Patch.IsPatch != tc.isPatch || ev.Patch.Operation != tc.op || ev.Patch.OpensCycle != tc.opens {
				t.Errorf("patch %+v, want patch %v op %q opens %v", ev.Patch, tc.isPatch, tc.op, tc.opens)
			}
			if ev.DocumentName != tc.spec.DocumentName {
				t.Errorf("document name %q", ev.DocumentName)
			}
			if tc.spec.AssociationID == "" {
				if ev.DocumentType != "SendCommand" || ev.CommandID != d.ID() || ev.AssociationID != "" {
					t.Errorf("command identity: %+v", ev)
				}
				return
			}
			// State Manager: the file is <AssociationID>.<RunID>, no CommandID.
			info := d.State.DocumentInformation
			if ev.DocumentType != "Association" || ev.AssociationID != tc.spec.AssociationID || ev.CommandID != "" ||
				ev.RunID != info.RunID || ev.DocumentID != tc.spec.AssociationID+"."+info.RunID ||
				ev.MessageID != "aws.ssm."+tc.spec.AssociationID+"."+a.InstanceID {
				t.Errorf("association identity: %+v", ev)
			}
			if !strings.HasPrefix(info.RunID, "20") || strings.Contains(info.RunID, ":") {
				t.Errorf("RunID %q is not in the agent's dashed ISO format", info.RunID)
			}
		})
	}
}

// An inotify overflow may have dropped any notification: the rescan must
// find documents that appeared, moved, changed and left meanwhile.
func TestWatcherRescanAfterOverflow(t *testing.T) {
	root := t.TempDir()
	a := newAgent(t, root)
	a.SaveAtEndOnly = true
	must(t, a.Init())
	done := submit(t, a, ssmsim.RunPatchBaseline("Install", "NoReboot"))
	must(t, done.Start())
	rebooting := submit(t, a, ssmsim.RunPatchBaseline("Install", "RebootIfNeeded"))
	must(t, rebooting.Start())
	waiting := submit(t, a, ssmsim.RunPatchBaseline("Install", "NoReboot"))

	var got []ssm.CommandEvent
	w := ssm.NewWatcher(root, nil, slog.New(slog.DiscardHandler), prometheus.NewRegistry(), func(ev ssm.CommandEvent) { got = append(got, ev) })
	l, err := ssm.StartLoop(w)
	must(t, err)
	defer l.Close()
	if len(got) != 3 {
		t.Fatalf("start-up: %d events, want 3: %+v", len(got), got)
	}
	got = nil

	// Meanwhile, unheard: one run ends, one asks for a reboot, one starts,
	// a new one arrives, and a second instance folder appears.
	must(t, done.Finish("Success"))
	must(t, rebooting.RequestReboot(""))
	must(t, waiting.Start())
	fresh := submit(t, a, ssmsim.RunPatchBaseline("Scan", "NoReboot"))
	other := ssmsim.New(root, "mi-0fedcba9876543210", "")
	must(t, other.Init())
	elsewhere := submit(t, other, ssmsim.RunShellScript("true"))

	l.Overflow()
	byDoc := map[string][]ssm.CommandEvent{}
	for _, ev := range got {
		byDoc[ev.DocumentID] = append(byDoc[ev.DocumentID], ev)
	}
	check := func(d *ssmsim.Doc, want ...string) {
		t.Helper()
		var kinds []string
		for _, ev := range byDoc[d.ID()] {
			kinds = append(kinds, string(ev.Kind)+"/"+string(ev.Folder)+"/"+ev.Status)
		}
		if strings.Join(kinds, " ") != strings.Join(want, " ") {
			t.Errorf("document %s: events %v, want %v", d.ID(), kinds, want)
		}
	}
	check(done, "status_changed/current/Success", "gone//Success")
	check(rebooting, "status_changed/current/SuccessAndReboot")
	check(waiting, "seen/current/InProgress")
	check(fresh, "seen/pending/InProgress")
	check(elsewhere, "seen/pending/InProgress")
	if len(got) != 6 {
		t.Errorf("%d events after the rescan, want 6", len(got))
	}
	if ws := w.Watched(); len(ws) != 2 {
		t.Errorf("Watched() = %v after the rescan, want both instance folders", ws)
	}
	// A second rescan with nothing new reports nothing.
	got = nil
	l.Overflow()
	if len(got) != 0 {
		t.Errorf("second rescan: %+v", got)
	}
}

// Files the agent keeps beside the instance folders change often; they
// must not cost a rescan each time. New instance folders must.
func TestWatcherRescansOnlyForFolderChanges(t *testing.T) {
	root := t.TempDir()
	a := newAgent(t, root)
	must(t, a.Init())
	h := startWatcher(t, root, nil)
	const msg = "msg=\"rescanning amazon-ssm-agent's state folders\""
	before := strings.Count(h.log.String(), msg)
	must(t, os.WriteFile(filepath.Join(root, "credentials"), []byte("x"), 0o600))
	must(t, os.MkdirAll(filepath.Join(root, "ipc", "health"), 0o700))
	must(t, os.WriteFile(filepath.Join(root, "ipc", "health", "msg"), []byte("x"), 0o600))
	must(t, os.MkdirAll(filepath.Join(root, a.InstanceID, "document", "orchestration", "x"), 0o700))
	must(t, os.WriteFile(filepath.Join(a.StateDir(ssm.Current), "..", "notes"), []byte("x"), 0o600))
	d := submit(t, a, ssmsim.RunPatchBaseline("Install", "NoReboot"))
	h.next(ssm.Seen, ssm.Pending, d.ID())
	if n := strings.Count(h.log.String(), msg) - before; n != 0 {
		t.Errorf("%d rescans for changes outside the state folders:\n%s", n, h.log.String())
	}
	other := ssmsim.New(root, "mi-0fedcba9876543210", "")
	must(t, other.Init())
	e := submit(t, other, ssmsim.RunPatchBaseline("Install", "NoReboot"))
	h.next(ssm.Seen, ssm.Pending, e.ID())
	if n := strings.Count(h.log.String(), msg) - before; n == 0 {
		t.Errorf("a new instance folder caused no rescan")
	}
}

// The start-up race of a cycle held open until its failsafe: the first
// scan catches the state file half written (the agent rewrites in place),
// and the agent deletes it before it parses. The watcher must count it
// present at the first scan and report its leaving; before, it recorded
// nothing, so the cycle waited for an event that never came. Deterministic:
// the fake clock never fires the retry, so the deletion always comes first.
func TestWatcherHalfWrittenAtStartThenDeleted(t *testing.T) {
	root := t.TempDir()
	a := newAgent(t, root)
	must(t, a.Init())
	d := a.Build(ssmsim.RunPatchBaseline("Install", "RebootIfNeeded"))
	d.Folder = ssm.Current
	must(t, d.WritePartial(100))
	fc := clockwork.NewFakeClock()
	scanned := make(chan []string, 1)
	h := startWatcher(t, root, nil, append(fakeRetries(fc), ssm.WithFirstScan(func(p []string) { scanned <- p }))...)
	if p := <-scanned; len(p) != 1 || p[0] != d.Path() {
		t.Fatalf("first scan holds %v present, want the half-written %s", p, d.Path())
	}
	cur, err := h.w.Documents(context.Background(), ssm.Current)
	if err != nil || len(cur) != 1 || cur[0] != d.Path() {
		t.Fatalf("Documents(current) = %v, %v; want the half-written file", cur, err)
	}
	must(t, os.Remove(d.Path()))
	ev := h.next(ssm.Gone, "", d.ID())
	if ev.Status != "" || ev.InstanceID != a.InstanceID {
		t.Errorf("gone event of a never-parsed file: %+v", ev)
	}
	if cur, err := h.w.Documents(context.Background(), ""); err != nil || len(cur) != 0 {
		t.Errorf("Documents after the delete = %v, %v; want none", cur, err)
	}
	select {
	case ev := <-h.events:
		t.Errorf("unexpected event %s for %s", ev.Kind, ev.DocumentID)
	default:
	}
}

// A file that does not parse at first and then does is Seen once, with
// its status.
func TestWatcherUnparsedThenParsedIsSeen(t *testing.T) {
	root := t.TempDir()
	a := newAgent(t, root)
	must(t, a.Init())
	d := a.Build(ssmsim.RunPatchBaseline("Install", "NoReboot"))
	d.Folder = ssm.Current
	must(t, d.WritePartial(50))
	fc := clockwork.NewFakeClock()
	h := startWatcher(t, root, nil, fakeRetries(fc)...)
	must(t, d.Rewrite())
	h.next(ssm.Seen, ssm.Current, d.ID())
}
