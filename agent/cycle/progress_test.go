package cycle

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/jonboulle/clockwork"

	"github.com/patchd/patchd/agent/cycle/cyclestate"
	"github.com/patchd/patchd/hooks"
)

// rawState reads cycle.json alone, without the progress journal.
func rawState(t *testing.T, dir string) State {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(dir, FileName))
	if err != nil {
		t.Fatal(err)
	}
	var st State
	if err := json.Unmarshal(data, &st); err != nil {
		t.Fatal(err)
	}
	return st
}

// A hook whose end is recorded only in the progress journal is not run
// again after a crash; the hook that was running is.
func TestFinishedHookInJournalIsNotRunAgain(t *testing.T) {
	r := &fakeRunner{hooks: map[hooks.Phase][]string{hooks.PrePatch: {"10-a", "20-b", "30-c"}},
		block: "pre-patch/30-c", start: make(chan string, 10)}
	h := newHarness(t, r)
	go h.e.Gate(context.Background(), GateRequest{Phase: "pre-patch", WaitForPatch: true})
	for _, want := range []string{"pre-patch/10-a", "pre-patch/20-b", "pre-patch/30-c"} {
		if got := <-r.start; got != want {
			t.Fatalf("started %s, want %s", got, want)
		}
	}
	h.stop() // 30-c is cut short; nothing else is written at a stop
	raw := rawState(t, h.dir)
	if ps := raw.Current.Phases[PhasePrePatch]; len(ps.Hooks) > 1 && ps.Hooks[1].Finished {
		t.Fatalf("cycle.json already records 20-b as finished: the journal is not exercised")
	}
	st, err := LoadState(filepath.Join(h.dir, FileName))
	if err != nil {
		t.Fatal(err)
	}
	if ps := st.Current.Phases[PhasePrePatch]; len(ps.Hooks) != 3 || !ps.Hooks[0].Finished || !ps.Hooks[1].Finished || ps.Hooks[2].Finished || ps.Hooks[2].Attempt != 1 {
		t.Fatalf("replayed pre-patch: %+v", st.Current.Phases[PhasePrePatch])
	}
	r.mu.Lock()
	r.block = ""
	r.mu.Unlock()
	r.start = nil
	h.start()
	h.flush()
	h.counts(t, map[string]int{"pre-patch/10-a": 1, "pre-patch/20-b": 1, "pre-patch/30-c": 2})
	if env := r.last("pre-patch/30-c"); env.Attempt != 2 {
		t.Errorf("30-c's second run has PATCHD_ATTEMPT=%d, want 2", env.Attempt)
	}
	// The phase's end wrote cycle.json whole and emptied the journal.
	if raw := rawState(t, h.dir); !raw.Current.Phases[PhasePrePatch].Done {
		t.Errorf("pre-patch not done in cycle.json")
	}
	if _, err := os.Stat(filepath.Join(h.dir, ProgressFileName)); !os.IsNotExist(err) {
		t.Errorf("the journal is still there after the phase: %v", err)
	}
}

// Records at or below cycle.json's sequence number were already written
// whole (a crash between the state write and the journal's removal): they
// are not applied again, so a hook finished since is not made to run.
func TestOldJournalRecordsAreIgnored(t *testing.T) {
	st := &State{Version: stateVersion, ProgressSeq: 5, Current: &Cycle{ID: "c1", Phases: map[string]*PhaseState{
		PhasePrePatch: {Started: true, Hooks: []HookState{{Finished: true}}}}}}
	st.Current.Phases[PhasePrePatch].Hooks[0].Name, st.Current.Phases[PhasePrePatch].Hooks[0].Outcome = "10-a", "success"
	for _, r := range []progressRecord{
		{Seq: 5, Cycle: "c1", Phase: PhasePrePatch, Hook: HookState{Finished: false}},
		{Seq: 6, Cycle: "other", Phase: PhasePrePatch},
	} {
		r.Hook.Name = "10-a"
		st.ApplyProgress(r)
	}
	if hs := st.Current.Phases[PhasePrePatch].Hooks; len(hs) != 1 || !hs[0].Finished {
		t.Errorf("an old or foreign record was applied: %+v", hs)
	}
}

// writeVolume runs one pre-patch phase of n hooks (gate-opened) in a new
// state directory and returns the bytes of state written and the final
// size of cycle.json.
func writeVolume(tb testing.TB, n int, fullEveryStep bool) (written int64, final int64) {
	var names []string
	for i := range n {
		names = append(names, fmt.Sprintf("%05d-hook", i))
	}
	dir := tb.TempDir()
	r := &fakeRunner{hooks: map[hooks.Phase][]string{hooks.PrePatch: names}}
	e, err := New(Options{StateDir: dir, Runner: r, Clock: clockwork.NewFakeClock(),
		Settings: func() Settings { return Settings{FailsafeAge: time.Hour, LedgerMaxEntries: 10} }})
	if err != nil {
		tb.Fatal(err)
	}
	e.fullEveryStep = fullEveryStep
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- e.Run(ctx) }()
	rep := e.Gate(context.Background(), GateRequest{Phase: "pre-patch", WaitForPatch: true})
	cancel()
	<-done
	if !rep.OK {
		tb.Fatalf("gate: %+v", rep)
	}
	fi, err := os.Stat(filepath.Join(dir, FileName))
	if err != nil {
		tb.Fatal(err)
	}
	return e.written, fi.Size()
}

// BenchmarkPhaseStateWrites measures the state written for one phase of
// 2,000 hooks: "journal" is patchd's scheme, "rewrite" the former one that
// wrote cycle.json whole at each hook's start and end.
func BenchmarkPhaseStateWrites(b *testing.B) {
	for _, v := range []struct {
		name string
		full bool
	}{{"journal", false}, {"rewrite", true}} {
		b.Run(v.name, func(b *testing.B) {
			var written, final int64
			for b.Loop() {
				written, final = writeVolume(b, 2000, v.full)
			}
			b.ReportMetric(float64(written), "state-bytes/phase")
			b.ReportMetric(float64(final), "cycle.json-bytes")
		})
	}
}

// 2,000 hooks in one phase: the state written stays within a small
// multiple of the final cycle.json plus a few hundred bytes per hook step,
// where rewriting cycle.json around every hook wrote about 1.5 GiB.
func TestStateWritesPerPhaseAreBounded(t *testing.T) {
	const n = 2000
	written, final := writeVolume(t, n, false)
	bound := 3*final + 2*n*1024
	t.Logf("%d hooks: %d bytes of state written, cycle.json %d bytes (bound %d)", n, written, final, bound)
	if written > bound {
		t.Errorf("%d hooks wrote %d bytes of state, bound %d", n, written, bound)
	}
}

// A record torn by a write cut short (a full disk) does not take the next
// record with it.
func TestTornJournalRecordDoesNotSwallowTheNext(t *testing.T) {
	dir := t.TempDir()
	j := progressJournal{path: filepath.Join(dir, ProgressFileName)}
	rec := func(seq int64, name string, finished bool) progressRecord {
		r := progressRecord{Seq: seq, Cycle: "c1", Phase: PhasePrePatch}
		r.Hook.Name, r.Hook.Finished = name, finished
		return r
	}
	if _, err := j.append(rec(1, "10-a", true)); err != nil {
		t.Fatal(err)
	}
	j.close()
	// The torn write: half a record, no newline.
	f, err := os.OpenFile(j.path, os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.WriteString(`{"seq":2,"cycle":"c1","pha`); err != nil {
		t.Fatal(err)
	}
	f.Close()
	if _, err := j.append(rec(3, "20-b", true)); err != nil {
		t.Fatal(err)
	}
	j.close()
	st := &State{Version: stateVersion, Current: &Cycle{ID: "c1"}}
	if err := cyclestate.ReplayProgress(j.path, st); err != nil {
		t.Fatal(err)
	}
	hs := st.Current.Phases[PhasePrePatch].Hooks
	if len(hs) != 2 || !hs[0].Finished || hs[1].Name != "20-b" || !hs[1].Finished {
		t.Errorf("replayed %+v, want 10-a and 20-b finished", hs)
	}
}
