package agentlog

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/fsnotify/fsnotify"
	"github.com/jonboulle/clockwork"

	"github.com/patchd/patchd/agent/atomicfile"
)

// A state directory that cannot be written (here a file stands where the
// directory should be, which fails for root too): the tailer keeps
// retrying at its persist interval, each failure is counted, and the log
// gets one line, not one per tick.
func TestFailingPersistIsCountedAndLoggedOnce(t *testing.T) {
	h := newHarness(t)
	blocker := filepath.Join(t.TempDir(), "state")
	if err := os.WriteFile(blocker, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	f := openAppend(t, filepath.Join(h.dir, agentLog))
	o := h.options()
	o.StatePath = filepath.Join(blocker, StateFile)
	fc := clockwork.NewFakeClock()
	o.Clock = fc
	tl, err := New(o)
	if err != nil {
		t.Fatal(err)
	}
	started := make(chan struct{})
	tl.started = func() { close(started) }
	events, errs := make(chan fsnotify.Event), make(chan error)
	h.runWith(func(ctx context.Context) error {
		return tl.run(ctx, events, errs, func() error { return nil })
	})
	<-started
	before := atomicfile.Failures()
	msgs := appendLines(t, f, "a", 0, 3)
	events <- fsnotify.Event{Name: f.Name(), Op: fsnotify.Write}
	h.expectAdvancing(fc, o.IdleFlush, msgs...)
	// Drive the tick for a while of fake time (under a minute): it stays
	// on, the offsets not being saved.
	deadline := time.NewTimer(20 * time.Second)
	defer deadline.Stop()
	pace := time.NewTicker(time.Millisecond)
	defer pace.Stop()
	for atomicfile.Failures()-before < 20 {
		select {
		case <-pace.C:
			fc.Advance(o.IdleFlush / 2)
		case <-deadline.C:
			t.Fatalf("only %d failed persists counted", atomicfile.Failures()-before)
		}
	}
	h.stop()
	if n := strings.Count(h.logs.String(), "cannot persist agent log offsets"); n != 1 {
		t.Errorf("%d error lines for %d failed persists within a minute, want 1", n, atomicfile.Failures()-before)
	}
}
