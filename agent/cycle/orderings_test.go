package cycle

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/jonboulle/clockwork"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/patchd/patchd/agent/ledger"
	"github.com/patchd/patchd/agent/ssm"
	"github.com/patchd/patchd/agent/ssm/ssmsim"
	"github.com/patchd/patchd/hooks"
)

// This file generates every ordering of the agent's writes, rewrites and
// deletes of a patch document's state file against patchd running,
// stopped, killed and restarting, for each way a patch run ends, and checks
// that each yields the right PATCHD_RESULT and runs post-patch exactly once.
// The engine and the real command watcher run in-process on a simulated
// agent's folders; a fake hook runner and a fake clock keep it fast.

// agentOp is one thing the agent does to the state file.
type agentOp struct {
	name string
	// status is the document's status after the op, as the agent writes it
	// (for the model of what patchd could have read).
	status string
	do     func(t *testing.T, w *world)
	reboot bool // the host reboots: patchd cannot be up during it
	delete bool // the file leaves current/
}

type outcome struct {
	name string
	ops  []agentOp
}

func outcomes() []outcome {
	submit := agentOp{name: "write pending/", status: "", do: func(t *testing.T, w *world) {
		d, err := w.agent.Submit(ssmsim.RunPatchBaseline("Install", "RebootIfNeeded"))
		if err != nil {
			t.Fatal(err)
		}
		w.doc = d
	}}
	start := agentOp{name: "rename to current/", do: func(t *testing.T, w *world) { must(t, w.doc.Start()) }}
	run := agentOp{name: "rewrite InProgress", status: ssm.StatusInProgress, do: func(t *testing.T, w *world) {
		must(t, w.doc.RunStep(""))
		w.doc.State.DocumentInformation.DocumentStatus = ssm.StatusInProgress
		must(t, w.doc.Rewrite())
	}}
	final := func(status string) agentOp {
		return agentOp{name: "rewrite " + status, status: status, do: func(t *testing.T, w *world) {
			for i := range w.doc.State.InstancePluginsInformation {
				p := &w.doc.State.InstancePluginsInformation[i]
				if p.Result.Status == ssm.StatusInProgress {
					p.Result.Status = status
				}
			}
			w.doc.State.DocumentInformation.DocumentStatus = status
			must(t, w.doc.Rewrite())
		}}
	}
	del := agentOp{name: "delete", delete: true, do: func(t *testing.T, w *world) { must(t, os.Remove(w.doc.Path())) }}
	askReboot := agentOp{name: "rewrite SuccessAndReboot", status: ssm.StatusSuccessAndReboot, do: func(t *testing.T, w *world) {
		p, err := firstRunning(w.doc)
		must(t, err)
		must(t, w.doc.RequestReboot(p))
	}}
	reboot := agentOp{name: "reboot", reboot: true, do: func(t *testing.T, w *world) { w.boot++ }}
	resume := agentOp{name: "rewrite RunCount+1 InProgress", status: ssm.StatusInProgress, do: func(t *testing.T, w *world) { must(t, w.doc.Resume()) }}
	plain := func(end string) []agentOp { return []agentOp{submit, start, run, final(end), del} }
	rebooted := func(end string) []agentOp {
		return []agentOp{submit, start, run, askReboot, reboot, resume, final(end), del}
	}
	return []outcome{
		{"success", plain(ssm.StatusSuccess)},
		{"failure", plain(ssm.StatusFailed)},
		{"reboot then success", rebooted(ssm.StatusSuccess)},
		{"reboot then failure", rebooted(ssm.StatusFailed)},
		{"cancel", plain(ssm.StatusCancelled)},
	}
}

func firstRunning(d *ssmsim.Doc) (string, error) {
	for _, p := range d.State.InstancePluginsInformation {
		if p.Result.Status == ssm.StatusInProgress {
			return p.Id, nil
		}
	}
	return "", fmt.Errorf("no step running")
}

// patchdMode is how patchd is absent for a window of the agent's ops.
type patchdMode int

const (
	running    patchdMode = iota // up throughout (down only across a reboot)
	stopped                      // a clean stop before op from, start before op to
	killed                       // the same, but its state on disk is what it was at the kill
	restarting                   // restarted at op from: the op lands between the engine's resume and the watcher's first scan
)

func (m patchdMode) String() string {
	return [...]string{"running", "stopped", "killed", "restarting"}[m]
}

type ordering struct {
	mode     patchdMode
	from, to int // patchd is down during ops from..to-1
}

// orderings lists every window for n ops.
func orderings(n int) []ordering {
	out := []ordering{{mode: running}}
	for from := 0; from < n; from++ {
		for to := from + 1; to <= n; to++ {
			out = append(out, ordering{stopped, from, to}, ordering{killed, from, to})
		}
		out = append(out, ordering{restarting, from, from + 1})
	}
	return out
}

// expect models what patchd can know: the statuses its watcher read while
// up, and whether it was up at the delete (then its held descriptor reads
// the final status). It returns whether a cycle opens and its result.
func expect(ops []agentOp, o ordering) (opened bool, result string) {
	down := func(i int) bool {
		return i < len(ops) && (ops[i].reboot || o.mode != running && i >= o.from && i < o.to)
	}
	status, last := "", ""
	for i, op := range ops {
		if op.delete {
			if !opened {
				return false, "" // it came and went unseen
			}
			if !down(i) {
				return true, resultOf(status, nil, false) // watched: the final write is read
			}
			if finalStatus(last) {
				return true, resultOf(last, nil, false)
			}
			return true, ResultUnknown
		}
		status = op.statusAfter(status)
		// patchd looks at the folders after op i when it is up during op
		// i or comes up right after it.
		if !down(i) || !down(i+1) {
			opened, last = true, status
		}
	}
	return opened, ""
}

// statusAfter is the file's status after the op (ops without a status
// leave it as it was).
func (op agentOp) statusAfter(prev string) string {
	if op.status == "" {
		return prev
	}
	return op.status
}

// world is one case: the simulated agent, patchd's state dir, and the
// running engine and watcher.
type world struct {
	t      *testing.T
	root   string
	agent  *ssmsim.Agent
	doc    *ssmsim.Doc
	state  string
	runner *fakeRunner
	clock  *clockwork.FakeClock
	boot   int

	e         *Engine
	w         *ssm.Watcher
	cancel    context.CancelFunc
	engDone   chan error
	watchDone chan error
}

func newWorld(t *testing.T) *world {
	root := t.TempDir()
	a := ssmsim.New(root, "i-0123456789abcdef0", "")
	must(t, a.Init())
	return &world{t: t, root: root, agent: a, state: t.TempDir(), runner: &fakeRunner{hooks: allHooks},
		clock: clockwork.NewFakeClockAt(time.Date(2026, 11, 1, 10, 0, 0, 0, time.UTC))}
}

// upEngine starts the engine alone; upWatcher then starts the watcher,
// whose first scan reaches the engine before any other event.
func (w *world) upEngine(shutdown bool) {
	e, err := New(Options{StateDir: w.state, AgentData: w.root, Runner: w.runner,
		Settings: func() Settings {
			return Settings{FailsafeAge: 3 * time.Hour, PostPatchRetries: 1, PostPatchRetryBackoff: time.Minute, LedgerMaxEntries: 10}
		},
		Reg: prometheus.NewRegistry(), Clock: w.clock, Shutdown: shutdownFlag(shutdown), StopBound: time.Minute,
		BootID: func() string { return fmt.Sprintf("boot-%d", w.boot) }})
	must(w.t, err)
	ctx, cancel := context.WithCancel(context.Background())
	w.e, w.cancel, w.engDone = e, cancel, make(chan error, 1)
	go func() { w.engDone <- e.Run(ctx) }()
}

func (w *world) upWatcher() {
	started := make(chan struct{})
	w.w = ssm.NewWatcher(w.root, nil, slog.New(slog.DiscardHandler), nil, w.e.Command,
		ssm.WithFirstScan(w.e.DocumentsScanned), ssm.WithStarted(func() { close(started) }))
	ctx, cancel := context.WithCancel(context.Background())
	prev := w.cancel
	w.cancel = func() { cancel(); prev() }
	w.watchDone = make(chan error, 1)
	go func() { w.watchDone <- w.w.Run(ctx) }()
	select {
	case <-started:
	case err := <-w.watchDone:
		w.t.Fatalf("watcher: %v", err)
	}
	w.settle()
}

// settle waits until the watcher has looked at the folders again (its
// answer comes after the events of that look) and the engine has handled
// every event.
func (w *world) settle() {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if _, err := w.w.Documents(ctx, ""); err != nil {
		w.t.Fatal(err)
	}
	c := make(chan struct{})
	w.e.enqueue(c)
	select {
	case <-c:
	case <-ctx.Done():
		w.t.Fatal("engine did not handle its queue")
	}
}

// down stops patchd; kill leaves its state as it was before the stop.
func (w *world) down(kill bool) {
	var saved []byte
	path := filepath.Join(w.state, FileName)
	if kill {
		saved, _ = os.ReadFile(path)
	}
	w.cancel()
	must(w.t, <-w.engDone)
	if w.watchDone != nil {
		must(w.t, <-w.watchDone)
	}
	w.e, w.w, w.watchDone = nil, nil, nil
	if kill {
		if saved == nil {
			os.Remove(path)
		} else {
			must(w.t, os.WriteFile(path, saved, 0o600))
		}
	}
}

func (w *world) up() {
	w.upEngine(false)
	w.upWatcher()
}

// TestEveryOrdering runs each outcome's orderings in a subtest of its own,
// the outcomes in parallel and, within one, four orderings at a time: the
// time goes into waiting for cycle.json's fsyncs, not into the CPU.
func TestEveryOrdering(t *testing.T) {
	for _, oc := range outcomes() {
		t.Run(oc.name, func(t *testing.T) {
			t.Parallel()
			all := orderings(len(oc.ops))
			next := make(chan ordering)
			var wg sync.WaitGroup
			for range 4 {
				wg.Add(1)
				go func() {
					defer wg.Done()
					for o := range next {
						// t.Run may be called from several goroutines.
						t.Run(fmt.Sprintf("%s[%d,%d)", o.mode, o.from, o.to), func(t *testing.T) {
							runOrdering(t, fmt.Sprintf("%s/%s[%d,%d)", oc.name, o.mode, o.from, o.to), oc.ops, o)
						})
					}
				}()
			}
			for _, o := range all {
				if t.Failed() {
					break // the first failures say enough
				}
				next <- o
			}
			close(next)
			wg.Wait()
			t.Logf("%d orderings", len(all))
		})
	}
}

func runOrdering(t *testing.T, name string, ops []agentOp, o ordering) {
	w := newWorld(t)
	isDown := false
	w.up()
	defer func() {
		if !isDown {
			w.down(false)
		}
	}()
	for i, op := range ops {
		inWindow := o.mode != running && i >= o.from && i < o.to
		switch {
		case op.reboot && !isDown:
			// The host goes down: a stop during a shutdown.
			w.e.o.Shutdown = shutdownFlag(true)
			w.down(false)
			isDown = true
		case inWindow && !isDown:
			if o.mode == restarting {
				w.down(false)
				w.upEngine(false)
				op.do(t, w)
				w.upWatcher()
				continue
			}
			w.down(o.mode == killed)
			isDown = true
		}
		op.do(t, w)
		nextDown := i+1 < len(ops) && (ops[i+1].reboot || o.mode != running && i+1 >= o.from && i+1 < o.to)
		if isDown && !nextDown {
			w.up()
			isDown = false
		}
		if !isDown && !(i+1 < len(ops) && ops[i+1].delete && !nextDown) {
			// The agent deletes right after its final write: while
			// patchd runs through both, it gets no look in between.
			w.settle()
		}
	}
	if isDown {
		w.up()
		isDown = false
	}
	w.settle()

	opened, want := expect(ops, o)
	post := w.runner.count("post-patch/10-p")
	if !opened {
		if post != 0 || w.runner.count("pre-patch/10-a") != 0 {
			t.Errorf("%s: patchd never saw the document, yet hooks ran: pre-patch %d, post-patch %d", name, w.runner.count("pre-patch/10-a"), post)
		}
		return
	}
	if post != 1 || w.runner.count("post-patch/20-q") != 1 || w.runner.count("pre-patch/10-a") != 1 || w.runner.count("pre-reboot/10-r") > 1 {
		t.Errorf("%s: pre-patch ran %d times, pre-reboot %d, post-patch %d and %d; want 1, at most 1, 1 and 1",
			name, w.runner.count("pre-patch/10-a"), w.runner.count("pre-reboot/10-r"), post, w.runner.count("post-patch/20-q"))
		return
	}
	env := w.runner.last("post-patch/10-p")
	if env.Result != want {
		t.Errorf("%s: PATCHD_RESULT=%s (%s), want %s", name, env.Result, env.ResultReason, want)
	}
	if (env.Result == ResultUnknown) != (env.ResultReason != "") {
		t.Errorf("%s: result %s with reason %q: an unknown result must say why, and only it", name, env.Result, env.ResultReason)
	}
	entries, _, err := ledger.Read(filepath.Join(w.state, ledger.FileName), 0)
	if err != nil || len(entries) != 1 || entries[0].Result != want || entries[0].ResultReason != env.ResultReason {
		t.Errorf("%s: ledger %+v (%v), want one entry with result %s", name, entries, err, want)
	}
	_ = hooks.PostPatch
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}
