package agentlog

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

// memJournal is a Journal in memory: a record per entry, a mark is a count.
type memJournal struct {
	mu      sync.Mutex
	msgs    []string
	pos     []Position
	markErr error
	recErr  error
	// recovered is what Recover was asked for, -1 if it was not called.
	recovered int64
}

func newMemJournal() *memJournal { return &memJournal{recovered: -1} }

func (j *memJournal) add(e Event) {
	j.mu.Lock()
	defer j.mu.Unlock()
	j.msgs = append(j.msgs, strings.Clone(e.Message))
	j.pos = append(j.pos, e.Pos)
}

func (j *memJournal) Mark() (int64, error) {
	j.mu.Lock()
	defer j.mu.Unlock()
	return int64(len(j.msgs)), j.markErr
}

func (j *memJournal) Recover(mark int64) ([]Position, error) {
	j.mu.Lock()
	defer j.mu.Unlock()
	j.recovered = mark
	if j.recErr != nil {
		return nil, j.recErr
	}
	if mark > int64(len(j.pos)) {
		return nil, errors.New("mark past the journal's end")
	}
	return append([]Position(nil), j.pos[mark:]...), nil
}

func (j *memJournal) messages() []string {
	j.mu.Lock()
	defer j.mu.Unlock()
	return append([]string(nil), j.msgs...)
}

// startJournal is harness.start with j recording every entry before the
// harness sees it.
func (h *harness) startJournal(j *memJournal) {
	h.t.Helper()
	h.start(func(o *Options) {
		sink := o.Sink
		o.Sink = func(e Event) { j.add(e); sink(e) }
		o.Journal = j
	})
}

// persistedMark waits until the offsets file carries mark.
func (h *harness) persistedMark(mark int64) []byte {
	h.t.Helper()
	var data []byte
	waitFor(h.t, "offsets with the journal's mark", func() bool {
		var err error
		data, err = os.ReadFile(h.state)
		if err != nil {
			return false
		}
		st, err := parseState(data)
		return err == nil && st.Mark != nil && *st.Mark == mark
	})
	return data
}

// waitFor polls cond on a ticker with a deadline: the offsets file is
// written by the Tailer's goroutine with nothing to wait on.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.NewTimer(20 * time.Second)
	defer deadline.Stop()
	tick := time.NewTicker(2 * time.Millisecond)
	defer tick.Stop()
	for !cond() {
		select {
		case <-deadline.C:
			t.Fatalf("timed out waiting for %s", what)
		case <-tick.C:
		}
	}
}

// TestJournalCrashAfterRecord is a SIGKILL right after entries reached the
// journal and before the offsets were written again: the offsets file is
// put back to its earlier content, as the crash would have left it. The
// restart must hand out neither those entries again nor lose any line, for
// a file still at its name and for one deleted while patchd was down.
func TestJournalCrashAfterRecord(t *testing.T) {
	for _, deleted := range []bool{false, true} {
		name := "current file"
		if deleted {
			name = "file deleted while down"
		}
		t.Run(name, func(t *testing.T) {
			h := newHarness(t)
			path := filepath.Join(h.dir, agentLog)
			f := openAppend(t, path)
			j := newMemJournal()
			h.startJournal(j)
			want := appendLines(t, f, "a", 0, 3)
			h.expect(want...)
			before := h.persistedMark(3)

			recorded := appendLines(t, f, "b", 0, 4)
			h.expect(recorded...)
			want = append(want, recorded...)
			h.stop()
			// The crash: the offsets file as it was before the b lines.
			if err := os.WriteFile(h.state, before, 0o600); err != nil {
				t.Fatal(err)
			}
			if deleted {
				if err := os.Remove(path); err != nil {
					t.Fatal(err)
				}
				f = openAppend(t, path)
			}
			fresh := appendLines(t, f, "c", 0, 2)
			h.startJournal(j)
			h.expect(fresh...)
			want = append(want, fresh...)
			if j.recovered != 3 {
				t.Errorf("Recover called with mark %d, want 3", j.recovered)
			}
			if got := j.messages(); strings.Join(got, ",") != strings.Join(want, ",") {
				t.Errorf("journal holds\n%q\nwant each line once:\n%q", got, want)
			}
		})
	}
}

// TestJournalRecoverError: a journal that cannot say what it holds stops the
// Tailer with an error naming the offsets file, instead of guessing.
func TestJournalRecoverError(t *testing.T) {
	h := newHarness(t)
	f := openAppend(t, filepath.Join(h.dir, agentLog))
	j := newMemJournal()
	h.startJournal(j)
	h.expect(appendLines(t, f, "a", 0, 2)...)
	h.stop()

	j.recErr = errors.New("journal cut short")
	o := h.options()
	o.Journal = j
	tl, err := New(o)
	if err != nil {
		t.Fatal(err)
	}
	err = tl.Run(context.Background())
	if err == nil || !strings.Contains(err.Error(), "journal cut short") || !strings.Contains(err.Error(), h.state) {
		t.Fatalf("Run: %v, want the journal's error with the offsets file's path", err)
	}
}

// TestJournalMarkError: while the journal cannot be made durable, the
// offsets are not written (they would describe records a crash could take).
func TestJournalMarkError(t *testing.T) {
	h := newHarness(t)
	f := openAppend(t, filepath.Join(h.dir, agentLog))
	j := newMemJournal()
	h.startJournal(j)
	h.expect(appendLines(t, f, "a", 0, 2)...)
	before := h.persistedMark(2)

	j.mu.Lock()
	j.markErr = errors.New("disk full")
	j.mu.Unlock()
	h.expect(appendLines(t, f, "b", 0, 2)...)
	waitFor(t, "the error logged", func() bool { return strings.Contains(h.logs.String(), "disk full") })
	if after, _ := os.ReadFile(h.state); string(after) != string(before) {
		t.Errorf("offsets written although the journal's mark failed:\n%s", after)
	}

	j.mu.Lock()
	j.markErr = nil
	j.mu.Unlock()
	h.expect(appendLines(t, f, "c", 0, 1)...)
	h.persistedMark(5)
}
