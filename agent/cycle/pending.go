package cycle

import (
	"path/filepath"
	"time"

	"github.com/patchd/patchd/agent/ledger"
)

// ledgerRetry is how often entries the ledger did not take (a full or
// read-only disk) are tried again.
const ledgerRetry = 30 * time.Second

// flushLedger writes the entries waiting for the ledger, oldest first, and
// reports whether the list changed (the caller saves the state). Every
// closed cycle goes through this list: an entry the disk does not take
// when its cycle closes stays in cycle.json (when that can be written) and
// is written when space returns, instead of being lost. An entry already
// in the ledger (a crash between the ledger write and the state write) is
// not written twice.
func (e *Engine) flushLedger() bool {
	pending := e.st.PendingLedger
	if len(pending) == 0 {
		return false
	}
	maxEntries := max(e.o.Settings().LedgerMaxEntries, 1)
	if len(pending) > maxEntries {
		// More than the ledger would keep anyway: the oldest would rotate
		// out at once.
		e.log.Warn("ledger entries waiting for the disk exceed cycle.ledger_max_entries; the oldest are dropped",
			"dropped", len(pending)-maxEntries)
		pending = pending[len(pending)-maxEntries:]
	}
	path := filepath.Join(e.o.StateDir, ledger.FileName)
	have := map[string]bool{}
	if last, _, err := ledger.Read(path, len(pending)); err == nil {
		for _, l := range last {
			have[l.CycleID] = true
		}
	}
	appendLedger := e.appendLedger
	if appendLedger == nil {
		appendLedger = ledger.Append
	}
	left := pending[:0:0]
	for i, en := range pending {
		if have[en.CycleID] {
			continue
		}
		if err := appendLedger(path, en, maxEntries); err != nil {
			left = append(left, pending[i:]...)
			e.ledgerErr.Failed(e.log, e.clock.Now(), "cannot write the ledger; the entry is kept and written when the state directory takes it again",
				"cycle", en.CycleID, "waiting", len(left), "retry_every", ledgerRetry, "err", err)
			break
		}
	}
	changed := len(left) != len(e.st.PendingLedger)
	e.st.PendingLedger = left
	if len(left) == 0 {
		e.ledgerErr.OK(e.log, "ledger written again", "path", path)
		e.st.PendingLedger = nil
	}
	return changed
}

// ledgerRetryTimer arms the retry of waiting ledger entries, if any.
func (e *Engine) ledgerRetryTimer() (<-chan time.Time, func()) {
	if len(e.st.PendingLedger) == 0 {
		return nil, func() {}
	}
	t := e.clock.NewTimer(ledgerRetry)
	return t.Chan(), func() { t.Stop() }
}
