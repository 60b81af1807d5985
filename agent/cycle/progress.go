package cycle

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"syscall"
	"time"

	"github.com/patchd/patchd/agent/atomicfile"
	"github.com/patchd/patchd/agent/ledger"
	"github.com/patchd/patchd/agent/safeopen"
)

// compactHook bounds what a hook record holds before it is stored (output
// tails, error), so that a record stays a few KiB whatever the hook
// printed. The name stays as it is: it is the hook's identity in the
// phase, and a file name is short anyway.
func compactHook(hs *HookState) {
	name := hs.Name
	hs.HookRun = ledger.CompactRun(hs.HookRun)
	hs.Name = name
}

// progressJournal appends records to the journal file.
type progressJournal struct {
	path string
	f    *os.File
}

// append writes r and makes it durable. The file is created on first use
// (its directory entry fsynced once) and opened without following a FIFO.
// A record starts with a newline too: after a write cut short (a full
// disk), the next record must not be glued to the torn one and lost with
// it. The empty lines this makes are skipped when reading.
func (j *progressJournal) append(r progressRecord) (int, error) {
	data, err := json.Marshal(r)
	if err != nil {
		return 0, err
	}
	line := make([]byte, 0, len(data)+2)
	line = append(append(append(line, '\n'), data...), '\n')
	if j.f == nil {
		_, statErr := os.Lstat(j.path)
		f, err := os.OpenFile(j.path, os.O_WRONLY|os.O_APPEND|os.O_CREATE|syscall.O_NONBLOCK|syscall.O_NOFOLLOW, 0o600)
		if err != nil {
			return 0, fmt.Errorf("cycle progress: %w", err)
		}
		if fi, err := f.Stat(); err != nil || !fi.Mode().IsRegular() {
			f.Close()
			if err == nil {
				err = fmt.Errorf("%s is a %s, not a regular file; remove it (patchd recreates it): %w", j.path, safeopen.Kind(fi.Mode()), safeopen.ErrNotRegular)
			}
			return 0, fmt.Errorf("cycle progress: %w", err)
		}
		if errors.Is(statErr, fs.ErrNotExist) {
			if err := atomicfile.SyncDir(filepath.Dir(j.path)); err != nil {
				f.Close()
				return 0, fmt.Errorf("cycle progress: %w", err)
			}
		}
		j.f = f
	}
	if _, err := j.f.Write(line); err != nil {
		j.close()
		return 0, fmt.Errorf("cycle progress %s: %w", j.path, err)
	}
	if err := syscall.Fdatasync(int(j.f.Fd())); err != nil {
		j.close()
		return 0, fmt.Errorf("cycle progress %s: fsync: %w", j.path, err)
	}
	return len(line), nil
}

func (j *progressJournal) close() {
	if j.f != nil {
		j.f.Close()
		j.f = nil
	}
}

// reset empties the journal once cycle.json holds everything in it. The
// removal need not be durable: records at or below cycle.json's
// ProgressSeq are ignored.
func (j *progressJournal) reset() {
	j.close()
	_ = os.Remove(j.path) // a failure is as harmless: the next append continues it
}

// snapEvery bounds how often Status's copy is refreshed from journal
// steps: encoding the whole state at every hook of a long phase would
// cost what the journal saves.
const snapEvery = 250 * time.Millisecond

// saveStep persists one step of a hook (its start or its end): the whole
// state when cycle.json does not hold this phase yet or when the package
// snapshot has just arrived, else one journal record.
func (e *Engine) saveStep(c *Cycle, phase string, ps *PhaseState, hs *HookState) {
	compactHook(hs)
	had := e.snapWait != nil
	e.attachSnapshot(false)
	if e.fullEveryStep || e.savedPhase != c.ID+"/"+phase || (had && e.snapWait == nil) {
		e.save()
		return
	}
	if e.appendStep(c, phase, ps, hs) {
		e.persist++
		if e.o.AfterPersist != nil {
			e.o.AfterPersist(e.persist)
		}
	}
}

// saveProcess persists the process group of a hook that has just started.
// It is not one of the steps AfterPersist counts: a crash there is a crash
// during the hook, after which the hook runs again by design.
func (e *Engine) saveProcess(c *Cycle, phase string, ps *PhaseState, hs *HookState) {
	if e.fullEveryStep || e.savedPhase != c.ID+"/"+phase {
		e.save()
		return
	}
	e.appendStep(c, phase, ps, hs)
}

// appendStep appends hs to the journal; on failure it writes the whole
// state instead and returns false.
func (e *Engine) appendStep(c *Cycle, phase string, ps *PhaseState, hs *HookState) bool {
	e.st.ProgressSeq++
	n, err := e.journal.append(progressRecord{Seq: e.st.ProgressSeq, Cycle: c.ID, Phase: phase, PhaseFailed: ps.Failed, Hook: *hs})
	if err != nil {
		atomicfile.CountFailure()
		e.log.Debug("cannot append to the cycle progress journal; writing the whole state instead", "err", err)
		e.save()
		return false
	}
	e.written += int64(n)
	if now := e.clock.Now(); now.Sub(e.lastSnap) >= snapEvery {
		e.updateSnap()
		e.lastSnap = now
	}
	return true
}
