package cyclestate

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"

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

// ProgressRecord is one line of the journal: a hook's whole record after
// a step, and its phase's failed flag then.
type ProgressRecord struct {
	Seq         int64     `json:"seq"`
	Cycle       string    `json:"cycle"`
	Phase       string    `json:"phase"`
	PhaseFailed bool      `json:"phase_failed,omitempty"`
	Hook        HookState `json:"hook"`
}

// ReplayProgress applies the journal at path to st: the records of the
// open cycle newer than st.ProgressSeq. A torn or unreadable line (power
// loss during an append) is skipped; it can only be the last one, whose
// step then runs again.
func ReplayProgress(path string, st *State) error {
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
			var r ProgressRecord
			if json.Unmarshal(line, &r) == nil {
				st.ApplyProgress(r)
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

// ApplyProgress applies one journal record to st: one newer than
// st.ProgressSeq for the open cycle; any other is ignored.
func (st *State) ApplyProgress(r ProgressRecord) {
	c := st.Current
	if c == nil || r.Cycle != c.ID || r.Seq <= st.ProgressSeq {
		return
	}
	st.ProgressSeq = r.Seq
	ps := c.PhaseState(r.Phase)
	ps.Started = true
	c.Phase = r.Phase
	if r.PhaseFailed {
		ps.Failed = true
	}
	*ps.Hook(r.Hook.Name, r.Phase) = r.Hook
}
