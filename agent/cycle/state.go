// Package cycle is patchd's patch-cycle state machine (docs/design.md): it
// turns command events, agent log events and gate requests into the
// pre-patch, pre-reboot and post-patch phases, and writes itself to disk
// before each phase and around each hook so that a crash or a reboot resumes
// where it stopped.
package cycle

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"time"

	"github.com/patchd/patchd/agent/ledger"
	"github.com/patchd/patchd/agent/safeopen"
)

// FileName is the state file's name inside the state directory.
const FileName = "cycle.json"

// stateVersion is bumped when State changes incompatibly.
const stateVersion = 1

// Triggers and results (docs/design.md, "The patch cycle").
const (
	TriggerObserved = "observed"
	TriggerGate     = "gate"

	ResultSuccess   = "success"
	ResultFailed    = "failed"
	ResultCancelled = "cancelled"
	ResultTimedOut  = "timed_out"
	ResultUnknown   = "unknown"
)

// Triggers and Results list the label values of patchd_cycles_total.
var (
	Triggers = []string{TriggerObserved, TriggerGate}
	Results  = []string{ResultSuccess, ResultFailed, ResultCancelled, ResultTimedOut, ResultUnknown}
)

// Phase names as stored; the hook phases plus the time between them.
const (
	PhasePrePatch  = "pre-patch"
	PhaseWaiting   = "waiting" // the patch runs; patchd waits for its end
	PhasePreReboot = "pre-reboot"
	PhasePostPatch = "post-patch"
)

// Document is what patchd knows of one patch command.
type Document struct {
	DocumentID    string `json:"document_id"`
	CommandID     string `json:"command_id,omitempty"`
	AssociationID string `json:"association_id,omitempty"`
	DocumentName  string `json:"document_name,omitempty"`
	Operation     string `json:"operation,omitempty"`
	InstanceID    string `json:"instance_id,omitempty"`
	Status        string `json:"status,omitempty"`
	RunCount      int    `json:"run_count,omitempty"`
	// Steps are the last known step statuses: the file is often deleted
	// right after its final write, so the last parse may predate the end.
	Steps map[string]string `json:"steps,omitempty"`
	// LogStatus is a final status the agent's log named for the document
	// (see endResult): evidence when the file left before patchd read it.
	LogStatus string `json:"log_status,omitempty"`
}

// HookState is a hook's record within a phase. Finished is false while it
// runs: a hook found unfinished after a crash is run again.
type HookState struct {
	ledger.HookRun
	Finished bool `json:"finished"`
	// Process is the running attempt's process group (process.go); it is
	// cleared when the hook finishes.
	Process *HookProcess `json:"process,omitempty"`
}

// PhaseState is one phase of a cycle.
type PhaseState struct {
	Started bool        `json:"started"`
	Done    bool        `json:"done"`
	Failed  bool        `json:"failed"`
	Hooks   []HookState `json:"hooks,omitempty"`
	Error   string      `json:"error,omitempty"`
}

// Cycle is the open patch cycle.
type Cycle struct {
	ID      string    `json:"id"`
	Trigger string    `json:"trigger"`
	Opened  time.Time `json:"opened"`
	Phase   string    `json:"phase"`
	// Document is the patch command the cycle follows; empty while a
	// gate-opened cycle waits for it.
	Document Document `json:"document"`
	// GateDocumentID is the document that ran `patchd gate pre-patch`. When
	// no patch command is adopted, its end ends the cycle, unless
	// WaitForPatch says the patch runs as a later, separate command.
	GateDocumentID string `json:"gate_document_id,omitempty"`
	WaitForPatch   bool   `json:"wait_for_patch,omitempty"`
	Region         string `json:"region,omitempty"`

	Phases          map[string]*PhaseState `json:"phases"`
	RebootRequested bool                   `json:"reboot_requested,omitempty"`
	BootID          string                 `json:"boot_id,omitempty"`
	// Ended is set when the patch run is known to be over; Result is then
	// what post-patch hooks are told.
	Ended  bool      `json:"ended,omitempty"`
	EndAt  time.Time `json:"end_at,omitzero"`
	Result string    `json:"result,omitempty"`
	// ResultReason says why Result is unknown (or where it came from when
	// not from the state file), for hooks, the ledger and patchd history.
	ResultReason string `json:"result_reason,omitempty"`
	// Also are patch commands that started and ended while this cycle was
	// open.
	Also []string `json:"also,omitempty"`

	// Packages is the snapshot taken when the cycle opened; it must survive
	// the reboot to compute the change at close.
	Packages      []ledger.Package `json:"packages,omitempty"`
	PackagesError string           `json:"packages_error,omitempty"`
}

func (c *Cycle) phase(name string) *PhaseState {
	if c.Phases == nil {
		c.Phases = map[string]*PhaseState{}
	}
	p := c.Phases[name]
	if p == nil {
		p = &PhaseState{}
		c.Phases[name] = p
	}
	return p
}

// State is everything in cycle.json.
type State struct {
	Version int    `json:"version"`
	Current *Cycle `json:"current,omitempty"`
	// Queue holds patch commands seen while another cycle was open.
	Queue []Document `json:"queue,omitempty"`
	// Closed are the latest documents whose cycle has closed, so that a late
	// event about them never opens a second cycle.
	Closed []string `json:"closed,omitempty"`
	// Last is the last finished cycle, as written to the ledger.
	Last *ledger.Entry `json:"last,omitempty"`
	// Totals counts finished cycles by "trigger/result" for
	// patchd_cycles_total, which must not restart at zero after a reboot.
	Totals             map[string]float64 `json:"totals,omitempty"`
	LastSuccessfulEnd  time.Time          `json:"last_successful_end,omitzero"`
	LastPackageChanges map[string]int     `json:"last_package_changes,omitempty"`
	// PendingLedger are closed cycles the ledger did not take yet (a full
	// or read-only disk); pending.go writes them when it can.
	PendingLedger []ledger.Entry `json:"pending_ledger,omitempty"`
	// ProgressSeq is the last record of the progress journal this file
	// includes; replay skips those at or below it.
	ProgressSeq int64 `json:"progress_seq,omitempty"`
}

const maxClosed = 64

func (s *State) wasClosed(id string) bool {
	if id == "" {
		return false
	}
	for _, c := range s.Closed {
		if c == id {
			return true
		}
	}
	return false
}

func (s *State) addClosed(ids ...string) {
	for _, id := range ids {
		if id != "" && !s.wasClosed(id) {
			s.Closed = append(s.Closed, id)
		}
	}
	if len(s.Closed) > maxClosed {
		s.Closed = s.Closed[len(s.Closed)-maxClosed:]
	}
}

// MaxStateBytes bounds what is read of cycle.json: a real one holds one
// cycle's compact hook records, kilobytes even with thousands of hooks.
const MaxStateBytes = 128 << 20

// readStateFile reads cycle.json without blocking on it and without
// reading more than MaxStateBytes: anything but a regular file is refused
// (safeopen.ErrNotRegular), as is a larger one (safeopen.ErrTooLarge).
func readStateFile(path string) ([]byte, error) {
	return safeopen.ReadFile(path, MaxStateBytes)
}

// LoadState reads cycle.json. A missing file is a fresh state. A file that
// does not parse, is too large, or is not a regular file (a FIFO would
// block the start for good) is moved aside (so it can be inspected) and a
// fresh state is returned with the error, for the caller to log.
func LoadState(path string) (*State, error) {
	data, err := readStateFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return &State{Version: stateVersion}, nil
	}
	if err != nil && !errors.Is(err, safeopen.ErrNotRegular) && !errors.Is(err, safeopen.ErrTooLarge) {
		return nil, fmt.Errorf("cycle state %s: %w (check the state directory's permissions)", path, err)
	}
	var st State
	if err == nil {
		err = json.Unmarshal(data, &st)
		if err == nil && st.Version != stateVersion {
			err = fmt.Errorf("unknown version %d", st.Version)
		}
	}
	if err != nil {
		aside := path + ".corrupt"
		if rerr := os.Rename(path, aside); rerr != nil {
			// The next write replaces it; say so rather than refuse to start.
			return &State{Version: stateVersion}, fmt.Errorf("cycle state %s unreadable (%w) and not moved aside (%v); starting without an open cycle, the next write replaces it", path, err, rerr)
		}
		return &State{Version: stateVersion}, fmt.Errorf("cycle state %s unreadable (%w); moved to %s and starting without an open cycle", path, err, aside)
	}
	if err := replayProgress(filepath.Join(filepath.Dir(path), ProgressFileName), &st); err != nil {
		// Without the journal the steps since the phase's start run again:
		// better than not starting.
		return &st, err
	}
	return &st, nil
}
