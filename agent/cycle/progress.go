package cycle

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"syscall"
	"time"

	"github.com/patchd/patchd/agent/atomicfile"
	"github.com/patchd/patchd/agent/ledger"
	"github.com/patchd/patchd/agent/safeopen"
)

// ProgressFileName is the open phase's hook journal inside the state
// directory.
//
// Rewriting cycle.json around every hook made a phase of n hooks write
// O(n²) bytes (2,000 hooks: 1.5 GiB). Instead, a hook's start and end are
// appended to this journal as one small record each, fsynced before the
// next step, and cycle.json is written whole only at the first step of a
// phase and at its end, when the journal is emptied. Loading replays the
// journal's records newer than cycle.json (each carries a sequence number;
// cycle.json the last one it includes), so a finished hook is never run
// again after a crash, exactly as when every step rewrote cycle.json.
const ProgressFileName = "cycle-progress.jsonl"

// maxProgressLine bounds one journal record when read: a record holds one
// compact hook record (ledger.CompactRun), a few KiB.
const maxProgressLine = 1 << 20

// progressRecord is one line of the journal: a hook's whole record after
// a step, and its phase's failed flag then.
type progressRecord struct {
	Seq         int64     `json:"seq"`
	Cycle       string    `json:"cycle"`
	Phase       string    `json:"phase"`
	PhaseFailed bool      `json:"phase_failed,omitempty"`
	Hook        HookState `json:"hook"`
}

// compactHook bounds what a hook record holds before it is stored (output
// tails, error), so that a record stays a few KiB whatever the hook
// printed. The name stays as it is: it is the hook's identity in the
// phase, and a file name is short anyway.
func compactHook(hs *HookState) {
	name := hs.Name
	hs.HookRun = ledger.CompactRun(hs.HookRun)
	hs.Name = name
}

// replayProgress applies the journal at path to st: the records of the
// open cycle newer than st.ProgressSeq. A torn or unreadable line (power
// loss during an append) is skipped; it can only be the last one, whose
// step then runs again.
func replayProgress(path string, st *State) error {
	f, err := safeopen.Open(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("cycle progress: %w", err)
	}
	defer f.Close()
	br := bufio.NewReaderSize(f, 64*1024)
	for {
		line, err := readBoundedLine(br, maxProgressLine)
		if len(bytes.TrimSpace(line)) > 0 {
			var r progressRecord
			if json.Unmarshal(line, &r) == nil {
				st.applyProgress(r)
			}
		}
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return fmt.Errorf("cycle progress %s: %w", path, err)
		}
	}
}

// readBoundedLine reads one line; a line longer than limit is consumed and
// returned empty.
func readBoundedLine(br *bufio.Reader, limit int) ([]byte, error) {
	var buf []byte
	over := false
	for {
		chunk, err := br.ReadSlice('\n')
		if !over {
			if len(buf)+len(chunk) > limit {
				over, buf = true, nil
			} else {
				buf = append(buf, chunk...)
			}
		}
		if errors.Is(err, bufio.ErrBufferFull) {
			continue
		}
		return buf, err
	}
}

func (st *State) applyProgress(r progressRecord) {
	c := st.Current
	if c == nil || r.Cycle != c.ID || r.Seq <= st.ProgressSeq {
		return
	}
	st.ProgressSeq = r.Seq
	ps := c.phase(r.Phase)
	ps.Started = true
	c.Phase = r.Phase
	if r.PhaseFailed {
		ps.Failed = true
	}
	*hookState(ps, r.Hook.Name, r.Phase) = r.Hook
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
