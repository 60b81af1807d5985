package cycle

import (
	"fmt"
	"path/filepath"
	"sync/atomic"
	"syscall"
	"testing"

	"github.com/patchd/patchd/agent/ledger"
	"github.com/patchd/patchd/hooks"
)

// A cycle closed while the disk is full reaches the ledger once space
// returns: it waits in cycle.json, is retried, and is written once.
func TestLedgerEntryWaitsForSpace(t *testing.T) {
	r := &fakeRunner{hooks: map[hooks.Phase][]string{hooks.PrePatch: {"10-a"}, hooks.PostPatch: {"10-p"}}}
	h := newHarness(t, r)
	var full atomic.Bool
	full.Store(true)
	failed := make(chan struct{}, 100)
	h.e.appendLedger = func(path string, en ledger.Entry, max int) error {
		if full.Load() {
			failed <- struct{}{}
			return fmt.Errorf("write %s: %w", path, syscall.ENOSPC)
		}
		return ledger.Append(path, en, max)
	}
	lpath := filepath.Join(h.dir, ledger.FileName)
	h.present("c1", true)
	h.send(install("c1", "seen", "InProgress"))
	h.present("c1", false)
	h.send(install("c1", "gone", "Success"))
	<-failed
	if st := h.e.Status(); st.Current != nil || st.Last == nil {
		t.Fatalf("the cycle did not close: %+v", st)
	}
	if got, _, _ := ledger.Read(lpath, 0); len(got) != 0 {
		t.Fatalf("ledger written on a full disk: %v", got)
	}
	if raw := rawState(t, h.dir); len(raw.PendingLedger) != 1 || raw.PendingLedger[0].DocumentID != "c1" {
		t.Fatalf("the entry is not kept in cycle.json: %+v", raw.PendingLedger)
	}
	// Still full at the next retry: still waiting.
	h.clock.Advance(ledgerRetry)
	<-failed
	full.Store(false)
	for i := 0; ; i++ {
		h.clock.Advance(ledgerRetry)
		h.flush()
		if got, _, _ := ledger.Read(lpath, 0); len(got) == 1 {
			if got[0].DocumentID != "c1" || got[0].Result != ResultSuccess {
				t.Errorf("ledger entry: %+v", got[0])
			}
			break
		}
		if i == 1000 {
			t.Fatal("the waiting entry never reached the ledger")
		}
	}
	h.flush()
	if raw := rawState(t, h.dir); len(raw.PendingLedger) != 0 {
		t.Errorf("the entry is still waiting after it was written: %+v", raw.PendingLedger)
	}
	// A restart neither loses nor repeats it.
	h.restart()
	h.flush()
	if got, _, _ := ledger.Read(lpath, 0); len(got) != 1 {
		t.Errorf("after a restart the ledger has %d entries, want 1", len(got))
	}
}

// An entry still waiting when patchd stops is written at the next start.
func TestWaitingLedgerEntrySurvivesARestart(t *testing.T) {
	r := &fakeRunner{hooks: map[hooks.Phase][]string{hooks.PostPatch: {"10-p"}}}
	h := newHarness(t, r)
	failed := make(chan struct{}, 10)
	h.e.appendLedger = func(path string, en ledger.Entry, max int) error {
		failed <- struct{}{}
		return syscall.ENOSPC
	}
	h.present("c1", true)
	h.send(install("c1", "seen", "InProgress"))
	h.present("c1", false)
	h.send(install("c1", "gone", "Failed"))
	<-failed
	h.restart() // the new engine's disk has room
	h.flush()
	got, _, _ := ledger.Read(filepath.Join(h.dir, ledger.FileName), 0)
	if len(got) != 1 || got[0].Result != ResultFailed {
		t.Fatalf("ledger after the restart: %+v", got)
	}
}
