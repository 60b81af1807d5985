package hoststate

import (
	"errors"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/jonboulle/clockwork"
	"github.com/patchd/patchd/agent/safeopen"
)

// FIFOs at host state's own state file and at the patch summary are
// refused, not waited on.
func TestFIFOsAreRefused(t *testing.T) {
	fh := newFixtureHost(t)
	for _, p := range []string{filepath.Join(fh.state, StateFile), filepath.Join(fh.patchDir, PatchSummaryFile)} {
		if err := syscall.Mkfifo(p, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	done := make(chan error, 1)
	go func() {
		h := fh.new(clockwork.NewFakeClockAt(t0))
		done <- h.checkSummary(fh.cfg())
	}()
	select {
	case err := <-done:
		if !errors.Is(err, safeopen.ErrNotRegular) {
			t.Fatalf("checkSummary with a FIFO = %v, want ErrNotRegular", err)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("host state blocked on a FIFO")
	}
}
