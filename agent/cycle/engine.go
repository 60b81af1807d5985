package cycle

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"log/slog"
	"maps"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jonboulle/clockwork"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/patchd/patchd/agent/agentlog"
	"github.com/patchd/patchd/agent/atomicfile"
	"github.com/patchd/patchd/agent/ledger"
	"github.com/patchd/patchd/agent/ssm"
	"github.com/patchd/patchd/hooks"
)

// Runner runs hooks. The hooks package's runner fits behind it; tests use
// a fake.
type Runner interface {
	// Discover lists a phase's files in lexical order, with their state.
	Discover(phase hooks.Phase) ([]hooks.Hook, error)
	// RunHook runs one hook to its end (or ctx's).
	RunHook(ctx context.Context, h hooks.Hook, env hooks.Env) hooks.Result
}

// Settings are the reloadable settings the engine reads at each use.
type Settings struct {
	FailsafeAge           time.Duration
	PostPatchRetries      int
	PostPatchRetryBackoff time.Duration
	LedgerMaxEntries      int
}

// Options build an Engine.
type Options struct {
	StateDir  string
	AgentData string // to guess the instance id of a cycle without a document
	Runner    Runner
	Packages  ledger.Snapshotter // nil: no package ledger
	// SnapshotDelay holds the open-time package snapshot back a moment, so
	// that it does not compete with the start of the first hook; it is
	// still taken long before a patch payload changes anything.
	SnapshotDelay time.Duration
	Settings      func() Settings
	Logger        *slog.Logger
	Reg           prometheus.Registerer
	Clock         clockwork.Clock // nil: the real clock
	// Shutdown says whether the system is going down; asked once at stop.
	Shutdown ShutdownDetector
	// StopBound bounds pre-reboot hooks run at stop during a shutdown.
	StopBound time.Duration
	// BootID returns an id that changes at every boot ("" if unknown).
	BootID func() string
	// AfterPersist is called after every write of cycle.json with its
	// count since start; tests use it to crash patchd at each step.
	AfterPersist func(n int)
	// OnClosed is told of every closed cycle after its ledger entry and
	// state are written; it must only enqueue (the inventory and the
	// compliance report follow it).
	OnClosed func(ledger.Entry)
}

// Engine is the cycle actor. Producers call Command, Log and Gate from any
// goroutine; only Run's goroutine changes the state.
type Engine struct {
	o       Options
	log     *slog.Logger
	clock   clockwork.Clock
	path    string
	st      *State
	m       *metrics
	persist int

	mu    sync.Mutex
	inbox []any
	wake  chan struct{}

	snapWait chan snapResult // the open-time package snapshot, while it runs
	snapNow  chan struct{}   // closed to end the snapshot's delay early

	snap     atomic.Pointer[[]byte] // last persisted state, for Status
	running  atomic.Pointer[string] // hook running now, for Status
	stopOnce sync.Once
	stopRun  bool // decided by stopOnce

	// The progress journal (progress.go): savedPhase is the cycle/phase
	// the last whole write of cycle.json covered.
	journal       progressJournal
	savedPhase    string
	lastSnap      time.Time
	written       int64 // bytes of state written, for the write-volume test
	fullEveryStep bool  // the old write-per-step scheme, for the benchmark's baseline
	saveErr       atomicfile.ErrorLog
	ledgerErr     atomicfile.ErrorLog
	// appendLedger is ledger.Append; tests make it fail like a full disk.
	appendLedger func(path string, e ledger.Entry, max int) error
}

type gateMsg struct {
	req   GateRequest
	reply chan GateReply
}

// New loads the state and registers the metrics, restored from it.
func New(o Options) (*Engine, error) {
	if o.Clock == nil {
		o.Clock = clockwork.NewRealClock()
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.StopBound <= 0 {
		o.StopBound = 80 * time.Second
	}
	if o.BootID == nil {
		o.BootID = func() string { return "" }
	}
	e := &Engine{o: o, log: o.Logger, clock: o.Clock, path: filepath.Join(o.StateDir, FileName), wake: make(chan struct{}, 1),
		journal: progressJournal{path: filepath.Join(o.StateDir, ProgressFileName)}}
	st, err := LoadState(e.path)
	if st == nil {
		return nil, err
	}
	if err != nil {
		e.log.Error("cycle state lost", "err", err)
	}
	e.st = st
	m, err := newMetrics(o.Reg)
	if err != nil {
		return nil, err
	}
	e.m = m
	e.m.restore(st)
	e.updateSnap()
	return e, nil
}

// Command enqueues a command event; it never blocks.
func (e *Engine) Command(ev ssm.CommandEvent) { e.enqueue(ev) }

// Log enqueues an agent log event; only reboot and command-end events
// matter, the rest is dropped here to keep the queue short. The event's
// strings are valid only during the call (agentlog.Event): what is queued
// is a clone.
func (e *Engine) Log(ev agentlog.Event) {
	if ev.Kind == agentlog.Reboot || ev.Kind == agentlog.CommandEnd || strings.Contains(ev.Message, cleanupMarker) {
		e.enqueue(ev.Clone())
	}
}

// recheckMsg carries the documents in pending/ and current/ right after
// the command watcher's first scan.
type recheckMsg struct{ present map[string]bool }

// DocumentsScanned takes the command watcher's first scan: the state files
// it holds present in pending/ and current/ (ssm.WithFirstScan). It is
// called from the watcher's goroutine before the watcher reports anything
// else. The watcher is the one judge of which documents exist: one present
// then gets an event when it leaves, with its last status; one absent
// left while patchd did not watch and gets no event, so the open cycle
// following it ends here. The engine never lists the agent's folders
// itself, which could see a file the watcher does not hold and then wait
// for an event that never comes.
func (e *Engine) DocumentsScanned(present []string) {
	m := make(map[string]bool, len(present))
	for _, p := range present {
		m[filepath.Base(p)] = true
	}
	e.enqueue(recheckMsg{present: m})
}

func (e *Engine) enqueue(m any) {
	e.mu.Lock()
	e.inbox = append(e.inbox, m)
	e.mu.Unlock()
	select {
	case e.wake <- struct{}{}:
	default:
	}
}

func (e *Engine) take() []any {
	e.mu.Lock()
	defer e.mu.Unlock()
	in := e.inbox
	e.inbox = nil
	return in
}

// Run handles events until ctx is done. At a stop during a system shutdown
// with a cycle open, it runs pre-reboot before it returns.
func (e *Engine) Run(ctx context.Context) error {
	if e.flushLedger() {
		e.save()
	}
	e.resume(ctx)
	for {
		retryLedger, stopRetry := e.ledgerRetryTimer()
		var failsafe <-chan time.Time
		var timer clockwork.Timer
		if c := e.st.Current; c != nil && !c.Ended {
			age := e.o.Settings().FailsafeAge
			if age > 0 {
				timer = e.clock.NewTimer(max(0, c.Opened.Add(age).Sub(e.clock.Now())))
				failsafe = timer.Chan()
			}
		}
		select {
		case <-ctx.Done():
			stopRetry()
			if timer != nil {
				timer.Stop()
			}
			e.atStop()
			if e.snapWait != nil {
				e.attachSnapshot(true)
				e.save()
			}
			// Gates still queued get an answer rather than a hung socket.
			for _, m := range e.take() {
				if g, ok := m.(gateMsg); ok {
					g.reply <- GateReply{Error: "patchd is stopping; run the gate again once it is back", Unavailable: true}
				}
			}
			return nil
		case <-e.wake:
			for _, m := range e.take() {
				if ctx.Err() != nil {
					// Unanswered gates learn that patchd is stopping.
					if g, ok := m.(gateMsg); ok {
						g.reply <- GateReply{Error: "patchd is stopping; run the gate again once it is back", Unavailable: true}
					}
					continue
				}
				e.handle(ctx, m)
			}
			if len(e.st.PendingLedger) > 0 && ctx.Err() == nil && e.flushLedger() {
				e.save() // any event is a chance for a waiting ledger entry
			}
		case <-failsafe:
			e.failsafe(ctx)
		case <-retryLedger:
			if e.flushLedger() {
				e.save()
			}
		}
		stopRetry()
		if timer != nil {
			timer.Stop()
		}
	}
}

func (e *Engine) handle(ctx context.Context, m any) {
	switch m := m.(type) {
	case ssm.CommandEvent:
		e.onCommand(ctx, m)
	case agentlog.Event:
		e.onLog(ctx, m)
	case gateMsg:
		m.reply <- e.onGate(ctx, m.req)
	case recheckMsg:
		if c := e.st.Current; c != nil && !c.Ended {
			if id := e.endDocument(c); id != "" && !m.present[id] {
				e.endUnwatched(c, id)
			}
		}
		e.advance(ctx)
	case chan struct{}:
		close(m) // flush: everything queued before it is handled
	}
}

// resume finishes what a crash or a reboot interrupted.
func (e *Engine) resume(ctx context.Context) {
	c := e.st.Current
	if c == nil {
		e.openQueued(ctx)
		return
	}
	if c.Packages == nil && c.PackagesError == "" {
		e.startSnapshot(ctx)
	}
	e.log.Info("resuming patch cycle", "cycle", c.ID, "trigger", c.Trigger, "document", c.Document.DocumentID, "phase", c.Phase)
	// Whether the document left while patchd was down is the command
	// watcher's to say, at its first scan (DocumentsScanned).
	e.advance(ctx)
}

// endUnwatched ends a cycle whose document left while nobody watched.
func (e *Engine) endUnwatched(c *Cycle, id string) {
	c.Ended, c.EndAt = true, e.clock.Now()
	c.Result, c.ResultReason = endResult(c.Document, c.Document.Status, c.Document.Steps, false, false)
	e.log.Info("patch command ended while patchd was not watching", "document", id, "result", c.Result, "why", c.ResultReason)
}

// endDocument is the document whose end ends the cycle ("" when unknown).
func (e *Engine) endDocument(c *Cycle) string {
	if c.Document.DocumentID != "" {
		return c.Document.DocumentID
	}
	if !c.WaitForPatch {
		return c.GateDocumentID
	}
	return ""
}

// advance runs whatever the open cycle needs next, in phase order, until
// it waits for an event or closes.
func (e *Engine) advance(ctx context.Context) {
	for ctx.Err() == nil {
		c := e.st.Current
		if c == nil {
			e.openQueued(ctx)
			if e.st.Current == nil {
				return
			}
			continue
		}
		switch {
		case !c.PhaseState(PhasePrePatch).Done:
			e.runPhase(ctx, c, hooks.PrePatch)
		case c.RebootRequested && !c.PhaseState(PhasePreReboot).Done && !c.Ended:
			e.runPhase(ctx, c, hooks.PreReboot)
		case c.Ended && !c.PhaseState(PhasePostPatch).Done:
			e.runPhase(ctx, c, hooks.PostPatch)
		case c.Ended:
			e.close(ctx)
		default:
			if e.snapWait != nil {
				e.attachSnapshot(true)
				e.save()
			}
			if c.Phase != PhaseWaiting {
				c.Phase = PhaseWaiting
				e.save()
			}
			e.m.setPhase(PhaseWaiting)
			return
		}
	}
}

func newID(now time.Time) string {
	b := make([]byte, 3)
	_, _ = rand.Read(b)
	return now.UTC().Format("20060102T150405Z") + "-" + hex.EncodeToString(b)
}

// open starts a cycle; the caller advances it. The package snapshot runs
// beside the first pre-patch hook (dpkg-query alone can take longer than the
// whole start-up budget) and is attached at the next write of the state.
func (e *Engine) open(ctx context.Context, trigger string, doc Document) *Cycle {
	now := e.clock.Now()
	c := &Cycle{ID: newID(now), Trigger: trigger, Opened: now, Phase: PhasePrePatch, Document: doc, BootID: e.o.BootID()}
	e.st.Current = c
	e.startSnapshot(ctx)
	e.log.Info("patch cycle opened", "cycle", c.ID, "trigger", trigger, "document", doc.DocumentID,
		"document_name", doc.DocumentName, "command_id", doc.CommandID, "operation", doc.Operation)
	e.m.opened(c)
	// Not written yet: the first hook's start writes it (the first thing
	// that must survive a crash), saving an fsync round on the way to the
	// first pre-patch hook. A crash before that loses a cycle in which
	// nothing ran; the command watcher reports the document again at start.
	return c
}

type snapResult struct {
	pkgs []ledger.Package
	err  error
}

func (e *Engine) startSnapshot(ctx context.Context) {
	if e.o.Packages == nil || e.snapWait != nil {
		return
	}
	ch := make(chan snapResult, 1)
	now := make(chan struct{})
	e.snapWait, e.snapNow = ch, now
	delay := e.o.SnapshotDelay
	go func() {
		if delay > 0 {
			// Let the first pre-patch hook start first: on a busy host the
			// package query's fork and reads would delay it.
			t := time.NewTimer(delay)
			select {
			case <-t.C:
			case <-now:
				// Someone waits for the snapshot (a gate's answer): the
				// hooks it made way for are done.
				t.Stop()
			case <-ctx.Done():
				t.Stop()
				ch <- snapResult{err: ctx.Err()}
				return
			}
		}
		sctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
		defer cancel()
		pk, err := e.o.Packages.Snapshot(sctx)
		ch <- snapResult{pk, err}
	}()
}

// attachSnapshot stores the open-time snapshot in the cycle once it is
// there; with block it waits for it. A snapshot cut short by the stop of
// patchd is not stored: the resume takes it again.
func (e *Engine) attachSnapshot(block bool) {
	if e.snapWait == nil {
		return
	}
	var r snapResult
	if block {
		if e.snapNow != nil {
			close(e.snapNow)
			e.snapNow = nil
		}
		r = <-e.snapWait
	} else {
		select {
		case r = <-e.snapWait:
		default:
			return
		}
	}
	e.snapWait, e.snapNow = nil, nil
	c := e.st.Current
	if c == nil || (r.err != nil && errors.Is(r.err, context.Canceled)) {
		return
	}
	c.Packages = r.pkgs
	if r.err != nil {
		c.PackagesError = r.err.Error()
		e.log.Warn("package snapshot at cycle open failed; the ledger will not list changes", "err", r.err)
	}
}

func (e *Engine) openQueued(ctx context.Context) {
	if e.st.Current != nil || len(e.st.Queue) == 0 {
		return
	}
	doc := e.st.Queue[0]
	e.st.Queue = e.st.Queue[1:]
	e.open(ctx, TriggerObserved, doc)
}

func docOf(ev ssm.CommandEvent) Document {
	return Document{
		DocumentID: ev.DocumentID, CommandID: ev.CommandID, AssociationID: ev.AssociationID,
		DocumentName: ev.DocumentName, Operation: ev.Patch.Operation, InstanceID: ev.InstanceID,
		Status: ev.Status, RunCount: ev.RunCount, Steps: maps.Clone(ev.PluginStatuses),
	}
}

// rebootAsked reports whether the agent asked for a reboot in this event.
func rebootAsked(ev ssm.CommandEvent) bool {
	if isReboot(ev.Status) {
		return true
	}
	for _, s := range ev.PluginStatuses {
		if isReboot(s) {
			return true
		}
	}
	return false
}

func isReboot(s string) bool { return s == "SuccessAndReboot" || s == "PassedAndReboot" }

// resultOf maps the agent's last document status to PATCHD_RESULT.
func resultOf(status string, plugins map[string]string, corrupt bool) string {
	if corrupt {
		return ResultUnknown
	}
	switch status {
	case "Success", "SuccessAndReboot", "PassedAndReboot", "TestPass":
		return ResultSuccess
	case "Failed", "TestFailure":
		return ResultFailed
	case "Cancelled":
		return ResultCancelled
	case "TimedOut":
		return ResultTimedOut
	}
	// The document status can lag the steps: decide from them when all ended.
	worst := ""
	for _, s := range plugins {
		switch s {
		case "Failed", "TestFailure":
			worst = ResultFailed
		case "TimedOut":
			if worst != ResultFailed {
				worst = ResultTimedOut
			}
		case "Cancelled":
			if worst == "" || worst == ResultSuccess {
				worst = ResultCancelled
			}
		case "Success", "SuccessAndReboot", "PassedAndReboot", "Skipped", "TestPass":
			if worst == "" {
				worst = ResultSuccess
			}
		default:
			return ResultUnknown
		}
	}
	if worst == "" {
		return ResultUnknown
	}
	return worst
}

func (e *Engine) onCommand(ctx context.Context, ev ssm.CommandEvent) {
	if wasClosed(e.st, ev.DocumentID) {
		return
	}
	c := e.st.Current
	if c != nil && ev.DocumentID != "" && (ev.DocumentID == c.Document.DocumentID ||
		(c.Document.DocumentID == "" && ev.DocumentID == c.GateDocumentID)) {
		e.followed(ctx, c, ev)
		return
	}
	if !ev.Patch.IsPatch {
		return
	}
	if !ev.Patch.OpensCycle {
		if ev.Kind == ssm.Seen {
			e.log.Info("patch command needs no hooks", "document", ev.DocumentID, "document_name", ev.DocumentName,
				"operation", ev.Patch.Operation, "reason", ev.Patch.Reason)
		}
		return
	}
	if ev.Kind == ssm.Gone {
		for i, q := range e.st.Queue {
			if q.DocumentID == ev.DocumentID && c != nil {
				// It ran entirely inside the open cycle, whose hooks
				// covered it.
				e.st.Queue = append(e.st.Queue[:i], e.st.Queue[i+1:]...)
				c.Also = append(c.Also, ev.DocumentID)
				addClosed(e.st, ev.DocumentID)
				e.log.Info("queued patch command ended within the open cycle", "document", ev.DocumentID, "cycle", c.ID)
				e.save()
				return
			}
		}
		return
	}
	if ev.Patch.Reason != "" {
		e.log.Info("patch command classified", "document", ev.DocumentID, "operation", ev.Patch.Operation, "reason", ev.Patch.Reason)
	}
	switch {
	case c == nil:
		c = e.open(ctx, TriggerObserved, docOf(ev))
		e.followed(ctx, c, ev)
	case c.Document.DocumentID == "":
		c.Document = docOf(ev)
		e.log.Info("gate cycle adopts the patch command", "cycle", c.ID, "document", ev.DocumentID, "document_name", ev.DocumentName)
		e.save()
		e.followed(ctx, c, ev)
	default:
		for _, q := range e.st.Queue {
			if q.DocumentID == ev.DocumentID {
				return
			}
		}
		e.st.Queue = append(e.st.Queue, docOf(ev))
		e.log.Info("patch command queued behind the open cycle", "document", ev.DocumentID, "cycle", c.ID)
		e.save()
	}
}

// followed handles an event about the document the open cycle follows.
func (e *Engine) followed(ctx context.Context, c *Cycle, ev ssm.CommandEvent) {
	d := &c.Document
	if d.DocumentID == ev.DocumentID {
		changed := false
		if ev.Status != "" && ev.Status != d.Status {
			d.Status, changed = ev.Status, true
		}
		if ev.RunCount > d.RunCount {
			d.RunCount, changed = ev.RunCount, true
		}
		if d.InstanceID == "" {
			d.InstanceID = ev.InstanceID
		}
		if len(ev.PluginStatuses) > 0 && !maps.Equal(ev.PluginStatuses, d.Steps) {
			d.Steps, changed = maps.Clone(ev.PluginStatuses), true
		}
		if changed {
			// The last status seen decides PATCHD_RESULT, also after a
			// restart.
			e.save()
		}
	}
	switch {
	case ev.Kind == ssm.Gone && !c.Ended && ev.DocumentID == e.endDocument(c):
		c.Ended, c.EndAt = true, e.clock.Now()
		status, steps := d.Status, d.Steps
		if ev.DocumentID != d.DocumentID { // the gate's own document
			status, steps = ev.Status, ev.PluginStatuses
		}
		c.Result, c.ResultReason = endResult(*d, status, steps, true, ev.Folder == ssm.Corrupt)
		e.log.Info("patch command ended", "cycle", c.ID, "document", ev.DocumentID, "status", ev.Status,
			"result", c.Result, "corrupt", ev.Folder == ssm.Corrupt, "why", c.ResultReason)
		e.save()
	case ev.Kind != ssm.Gone && rebootAsked(ev) && !c.RebootRequested:
		c.RebootRequested = true
		e.log.Info("the agent asked for a reboot", "cycle", c.ID, "document", ev.DocumentID, "status", ev.Status)
		e.save()
	}
	e.advance(ctx)
}

func (e *Engine) onLog(ctx context.Context, ev agentlog.Event) {
	c := e.st.Current
	if c == nil {
		return
	}
	// Only a line about this cycle's command, or about none, and not one
	// from before the cycle (the tail may replay old lines at start).
	if !ev.Time.IsZero() && ev.Time.Before(c.Opened.Add(-time.Minute)) {
		return
	}
	matches := (ev.DocumentID == "" && ev.CommandID == "") ||
		(ev.DocumentID != "" && ev.DocumentID == c.Document.DocumentID) ||
		(ev.CommandID != "" && ev.CommandID == c.Document.CommandID) ||
		(c.Document.DocumentID == "" && ev.DocumentID != "" && ev.DocumentID == c.GateDocumentID)
	if !matches {
		return
	}
	switch ev.Kind {
	case agentlog.Reboot:
		if !c.RebootRequested && !c.Ended {
			c.RebootRequested = true
			e.log.Info("the agent log says a reboot was requested", "cycle", c.ID, "line", ev.Message)
			e.save()
			e.advance(ctx)
		}
	case agentlog.CommandEnd:
		// The state file's removal is what ends a cycle; the log only
		// corroborates it.
		e.log.Debug("agent log: command complete", "cycle", c.ID, "command_id", ev.CommandID, "line", ev.Message)
	}
	if status, dir, ok := cleanupStatus(ev); ok && !c.Ended && orchestrationOf(dir, c.Document) && c.Document.LogStatus != status {
		c.Document.LogStatus = status
		e.log.Info("the agent log names the patch command's final status", "cycle", c.ID, "document", c.Document.DocumentID, "status", status)
		e.save()
	}
}

func (e *Engine) failsafe(ctx context.Context) {
	c := e.st.Current
	if c == nil || c.Ended {
		return
	}
	e.log.Warn("patch cycle reached the failsafe age without seeing its end; closing it as timed_out",
		"cycle", c.ID, "document", c.Document.DocumentID, "opened", c.Opened, "failsafe_age", e.o.Settings().FailsafeAge)
	c.Ended, c.EndAt, c.Result = true, e.clock.Now(), ResultTimedOut
	e.save()
	e.advance(ctx)
}

// close finishes the cycle after post-patch: ledger, counters, state.
func (e *Engine) close(ctx context.Context) {
	c := e.st.Current
	now := e.clock.Now()
	// Without an adopted document, the gate's own document was the run.
	docID, commandID, assocID := documentIDs(c)
	entry := ledger.Entry{
		CycleID: c.ID, Trigger: c.Trigger, Opened: c.Opened, Closed: now,
		DocumentID: docID, DocumentName: c.Document.DocumentName, CommandID: commandID,
		AssociationID: assocID, Operation: c.Document.Operation, InstanceID: c.Document.InstanceID,
		Status: c.Document.Status, Result: c.Result, ResultReason: c.ResultReason, Rebooted: e.rebooted(c), Also: c.Also,
		PackagesError: c.PackagesError,
	}
	for _, p := range []string{PhasePrePatch, PhasePreReboot, PhasePostPatch} {
		if ps := c.Phases[p]; ps != nil {
			for _, h := range ps.Hooks {
				entry.Hooks = append(entry.Hooks, h.HookRun)
			}
		}
	}
	e.attachSnapshot(true)
	if e.o.Packages != nil && c.PackagesError == "" {
		sctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
		after, err := e.o.Packages.Snapshot(sctx)
		cancel()
		if err != nil {
			entry.PackagesError = err.Error()
			e.log.Warn("package snapshot at cycle close failed", "err", err)
		} else {
			entry.Packages = ledger.Diff(c.Packages, after)
		}
	}
	if ctx.Err() != nil {
		return // closed after the restart, with a fresh snapshot
	}
	// Through the waiting list (pending.go): an entry the disk does not
	// take now is kept and written later, and a crash between the ledger
	// write and the state write below does not add the cycle twice.
	e.st.PendingLedger = append(e.st.PendingLedger, entry)
	e.flushLedger()
	if e.st.Totals == nil {
		e.st.Totals = map[string]float64{}
	}
	e.st.Totals[c.Trigger+"/"+c.Result]++
	if c.Result == ResultSuccess {
		e.st.LastSuccessfulEnd = now
	}
	e.st.LastPackageChanges = entry.Packages.Counts()
	e.st.Last = &entry
	addClosed(e.st, c.Document.DocumentID, c.GateDocumentID)
	e.st.Current = nil
	e.log.Info("patch cycle closed", "cycle", c.ID, "result", c.Result, "rebooted", entry.Rebooted,
		"installed", len(entry.Packages.Installed), "upgraded", len(entry.Packages.Upgraded), "removed", len(entry.Packages.Removed))
	e.m.closed(c.Trigger, c.Result, &entry, e.st)
	e.save()
	if e.o.OnClosed != nil {
		e.o.OnClosed(entry)
	}
}

func (e *Engine) rebooted(c *Cycle) bool {
	if c.RebootRequested {
		return true
	}
	now := e.o.BootID()
	return c.BootID != "" && now != "" && now != c.BootID
}

// save writes cycle.json. A failure is logged, not fatal: patchd keeps
// working, and only a crash before the next good write loses a step.
func (e *Engine) save() {
	e.attachSnapshot(false)
	data, err := json.MarshalIndent(e.st, "", "  ")
	if err == nil {
		err = atomicfile.WriteFile(e.path, append(data, '\n'), 0o600)
	}
	if err != nil {
		e.saveErr.Failed(e.log, e.clock.Now(), "cannot write the cycle state; a crash now would lose the last step", "err", err)
	} else {
		e.saveErr.OK(e.log, "cycle state written again", "path", e.path)
		e.snap.Store(&data)
		e.written += int64(len(data) + 1)
		e.savedPhase = ""
		if c := e.st.Current; c != nil {
			e.savedPhase = c.ID + "/" + c.Phase
		}
		e.journal.reset()
	}
	e.persist++
	if e.o.AfterPersist != nil {
		e.o.AfterPersist(e.persist)
	}
}

func (e *Engine) updateSnap() {
	data, _ := json.Marshal(e.st)
	e.snap.Store(&data)
}

// instanceID guesses the instance id for a cycle without a document: the
// one instance folder of the agent, when there is exactly one.
func (e *Engine) instanceID(c *Cycle) string {
	if c.Document.InstanceID != "" {
		return c.Document.InstanceID
	}
	if e.o.AgentData == "" {
		return ""
	}
	m, _ := filepath.Glob(filepath.Join(e.o.AgentData, "*", "document"))
	if len(m) == 1 {
		return filepath.Base(filepath.Dir(m[0]))
	}
	return ""
}

func bootIDFile(path string) func() string {
	return func() string {
		b, err := os.ReadFile(path)
		if err != nil {
			return ""
		}
		return strings.TrimSpace(string(b))
	}
}

// BootID reads the kernel's boot id.
var BootID = bootIDFile("/proc/sys/kernel/random/boot_id")
