package hooks

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"
)

// cpuTime is the CPU time (user and system) this process has used.
func cpuTime(tb testing.TB) time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		tb.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// createHooksWatched starts a watcher on a fresh tree, creates n hooks in
// pre-patch (batch at a time) and waits until the watcher lists them all runnable. It fails
// as soon as the process has used more than budget of CPU (0: no budget),
// and returns the CPU used, the creation of the files included.
func createHooksWatched(tb testing.TB, n, batch int, budget time.Duration) time.Duration {
	tb.Helper()
	root := filepath.Join(tb.TempDir(), "hooks.d")
	dir := filepath.Join(root, string(PrePatch))
	if err := os.MkdirAll(dir, 0o755); err != nil {
		tb.Fatal(err)
	}
	w := NewWatcher(root, nil, nil)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	watching := w.Changed()
	go func() { done <- w.Run(ctx) }()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			tb.Errorf("Run: %v", err)
		}
	}()
	<-watching
	start := cpuTime(tb)
	over := func(when string) {
		if used := cpuTime(tb) - start; budget > 0 && used > budget {
			tb.Fatalf("%s: %v of CPU used, over the budget of %v", when, used, budget)
		}
	}
	deadline := time.NewTimer(5 * time.Minute)
	defer deadline.Stop()
	// waitRunnable waits, scan by scan, until k hooks are listed runnable.
	waitRunnable := func(k int) {
		for {
			ch := w.Changed()
			runnable := 0
			for _, h := range w.List(PrePatch) {
				if h.State == Runnable {
					runnable++
				}
			}
			if runnable >= k {
				return
			}
			over(fmt.Sprintf("with %d of %d hooks listed", runnable, k))
			select {
			case <-ch:
			case <-deadline.C:
				tb.Fatalf("the watcher lists %d of %d hooks", runnable, k)
			}
		}
	}
	// The hooks come in batches, each seen by the watcher before the
	// next, as from a tool that installs them a few at a time: the events
	// then reach the watcher one by one instead of overflowing inotify's
	// queue (which would hide the cost of a rescan per event).
	for i := range n {
		// 0700: no umask can make it group- or world-writable.
		if err := os.WriteFile(filepath.Join(dir, fmt.Sprintf("%05d-hook", i)), []byte(okScript), 0o700); err != nil {
			tb.Fatal(err)
		}
		if (i+1)%batch == 0 {
			over(fmt.Sprintf("after %d hooks", i+1))
			waitRunnable(i + 1)
		}
	}
	waitRunnable(n)
	// Rescans still owed for earlier events cost CPU too: count until the
	// watcher has been quiet for a second.
	for quiet := false; !quiet; {
		ch := w.Changed()
		over("while the watcher catches up")
		select {
		case <-ch:
		case <-time.After(time.Second):
			quiet = true
		case <-deadline.C:
			tb.Fatal("the watcher never went quiet")
		}
	}
	used := cpuTime(tb) - start
	over("when all were listed")
	return used
}

// Creating 10,000 hooks under a running watcher costs less than 10
// CPU-seconds in all (it was minutes when every event rescanned the tree).
func TestWatcher10000HooksWithinCPUBudget(t *testing.T) {
	if testing.Short() {
		t.Skip("creates 10,000 files")
	}
	used := createHooksWatched(t, 10000, 500, 10*time.Second)
	t.Logf("10,000 hooks created and listed with %v of CPU", used)
}

// BenchmarkWatcherCreate10000 reports the CPU one burst of 10,000 new hooks
// costs (creation included), as cpu-s/op.
func BenchmarkWatcherCreate10000(b *testing.B) {
	var total time.Duration
	for b.Loop() {
		total += createHooksWatched(b, 10000, 500, 0)
	}
	b.ReportMetric(total.Seconds()/float64(b.N), "cpu-s/op")
}
