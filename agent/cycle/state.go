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

	"github.com/patchd/patchd/agent/cycle/cyclestate"
	"github.com/patchd/patchd/agent/safeopen"
)

// The state file's format, the gate's and status's messages, and the
// reading of both files for a view are in cyclestate, which the CLI links
// without the daemon's dependencies; these names are this package's own
// for them.
const (
	FileName         = cyclestate.FileName
	ProgressFileName = cyclestate.ProgressFileName
	MaxStateBytes    = cyclestate.MaxStateBytes
	stateVersion     = cyclestate.Version

	TriggerObserved = cyclestate.TriggerObserved
	TriggerGate     = cyclestate.TriggerGate

	ResultSuccess   = cyclestate.ResultSuccess
	ResultFailed    = cyclestate.ResultFailed
	ResultCancelled = cyclestate.ResultCancelled
	ResultTimedOut  = cyclestate.ResultTimedOut
	ResultUnknown   = cyclestate.ResultUnknown

	PhasePrePatch  = cyclestate.PhasePrePatch
	PhaseWaiting   = cyclestate.PhaseWaiting
	PhasePreReboot = cyclestate.PhasePreReboot
	PhasePostPatch = cyclestate.PhasePostPatch
)

// Triggers and Results list the label values of patchd_cycles_total.
var (
	Triggers = cyclestate.Triggers
	Results  = cyclestate.Results
)

type (
	Document    = cyclestate.Document
	HookState   = cyclestate.HookState
	HookProcess = cyclestate.HookProcess
	PhaseState  = cyclestate.PhaseState
	Cycle       = cyclestate.Cycle
	State       = cyclestate.State
	GateRequest = cyclestate.GateRequest
	GateReply   = cyclestate.GateReply
	Status      = cyclestate.Status

	progressRecord = cyclestate.ProgressRecord
)

// StatusFromFile reads the state file directly, for the CLI when the daemon
// is not running.
func StatusFromFile(stateDir string) (Status, error) { return cyclestate.StatusFromFile(stateDir) }

// maxClosed is how many closed documents State.Closed remembers.
const maxClosed = 64

func wasClosed(s *State, id string) bool {
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

func addClosed(s *State, ids ...string) {
	for _, id := range ids {
		if id != "" && !wasClosed(s, id) {
			s.Closed = append(s.Closed, id)
		}
	}
	if len(s.Closed) > maxClosed {
		s.Closed = s.Closed[len(s.Closed)-maxClosed:]
	}
}

// LoadState reads cycle.json. A missing file is a fresh state. A file that
// does not parse, is too large, or is not a regular file (a FIFO would
// block the start for good) is moved aside (so it can be inspected) and a
// fresh state is returned with the error, for the caller to log.
func LoadState(path string) (*State, error) {
	data, err := cyclestate.ReadStateFile(path)
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
	if err := cyclestate.ReplayProgress(filepath.Join(filepath.Dir(path), ProgressFileName), &st); err != nil {
		// Without the journal the steps since the phase's start run again:
		// better than not starting.
		return &st, err
	}
	return &st, nil
}
