// Package cyclestate is what patchd's patch cycle writes and answers: the
// state file cycle.json and its progress journal, the open cycle and its
// phases in them, and the gate's and status's messages. Package cycle, the
// state machine, writes them; the CLI reads them (`patchd status` without
// the daemon, `patchd gate`) and links only this package, not the daemon's
// dependencies (docs/design.md, "Two binaries").
package cyclestate

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"path/filepath"
	"time"

	"github.com/patchd/patchd/agent/ledger"
	"github.com/patchd/patchd/agent/safeopen"
)

// FileName is the state file's name inside the state directory.
const FileName = "cycle.json"

// Version is cycle.json's version, bumped when State changes
// incompatibly.
const Version = 1

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
	// (see package cycle's endResult): evidence when the file left before
	// patchd read it.
	LogStatus string `json:"log_status,omitempty"`
}

// HookState is a hook's record within a phase. Finished is false while it
// runs: a hook found unfinished after a crash is run again.
type HookState struct {
	ledger.HookRun
	Finished bool `json:"finished"`
	// Process is the running attempt's process group; it is cleared when
	// the hook finishes.
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

// PhaseState returns the state of the named phase, added empty when the
// cycle has none yet.
func (c *Cycle) PhaseState(name string) *PhaseState {
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
	// or read-only disk); package cycle writes them when it can.
	PendingLedger []ledger.Entry `json:"pending_ledger,omitempty"`
	// ProgressSeq is the last record of the progress journal this file
	// includes; replay skips those at or below it.
	ProgressSeq int64 `json:"progress_seq,omitempty"`
}

// Hook returns the record of the named hook in the phase, added when the
// phase has none yet.
func (ps *PhaseState) Hook(name, phase string) *HookState {
	for i := range ps.Hooks {
		if ps.Hooks[i].Name == name {
			return &ps.Hooks[i]
		}
	}
	ps.Hooks = append(ps.Hooks, HookState{HookRun: ledger.HookRun{Phase: phase, Name: name}})
	return &ps.Hooks[len(ps.Hooks)-1]
}

// HookProcess identifies a hook's running process group, recorded when the
// hook starts. Outside systemd nothing kills a hook's group when patchd is
// SIGKILLed: after the restart the orphaned run may still be going, and
// starting the hook again beside it would run it twice at once.
type HookProcess struct {
	// Pgid is the group's id, its leader's pid.
	Pgid int `json:"pgid"`
	// Start is the leader's start time in clock ticks after boot
	// (/proc/<pid>/stat field 22), so that a pid reused by another process
	// is not taken for the hook; 0 if it could not be read.
	Start uint64 `json:"start,omitempty"`
	// Boot is the boot id then: after a reboot the group is gone.
	Boot string `json:"boot,omitempty"`
}

// MaxStateBytes bounds what is read of cycle.json: a real one holds one
// cycle's compact hook records, kilobytes even with thousands of hooks.
const MaxStateBytes = 128 << 20

// ReadStateFile reads cycle.json without blocking on it and without
// reading more than MaxStateBytes: anything but a regular file is refused
// (safeopen.ErrNotRegular), as is a larger one (safeopen.ErrTooLarge).
func ReadStateFile(path string) ([]byte, error) {
	return safeopen.ReadFile(path, MaxStateBytes)
}

// readState reads the state directory's cycle.json and applies its
// progress journal, for a view: unlike the daemon's load (cycle.LoadState)
// it moves nothing aside, and a journal it cannot read is left out.
func readState(stateDir string) (*State, error) {
	path := filepath.Join(stateDir, FileName)
	data, err := ReadStateFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return &State{Version: Version}, nil
	}
	if err != nil {
		return nil, fmt.Errorf("cycle state %s: %w", path, err)
	}
	var st State
	if err := json.Unmarshal(data, &st); err != nil {
		return nil, fmt.Errorf("cycle state %s: %w", path, err)
	}
	_ = ReplayProgress(filepath.Join(stateDir, ProgressFileName), &st) // best effort: a view
	return &st, nil
}
