package cyclestate

import "github.com/patchd/patchd/agent/ledger"

// GateRequest is `patchd gate pre-patch|post-patch`.
type GateRequest struct {
	Phase string `json:"phase"` // pre-patch or post-patch
	// DocumentID is the document that runs the gate, when known (found
	// from the gate's ancestor ssm-document-worker, or given).
	DocumentID string `json:"document_id,omitempty"`
	// WaitForPatch: the patch runs as a later, separate command, so the end
	// of the gate's own document does not end the cycle.
	WaitForPatch bool   `json:"wait_for_patch,omitempty"`
	Region       string `json:"region,omitempty"`
	// Result, for post-patch, is what the caller knows of the patch run
	// (success, failed, ...); empty lets patchd decide.
	Result string `json:"result,omitempty"`
}

// GateReply says how the phase went.
type GateReply struct {
	OK      bool             `json:"ok"`
	CycleID string           `json:"cycle_id,omitempty"`
	Phase   string           `json:"phase,omitempty"`
	Message string           `json:"message,omitempty"`
	Hooks   []ledger.HookRun `json:"hooks,omitempty"`
	// Error is set when the request could not be served at all.
	Error string `json:"error,omitempty"`
	// Unavailable says the request failed only because patchd is stopping:
	// the same request succeeds once it is back.
	Unavailable bool `json:"-"`
}

// Status is what `patchd status` shows.
type Status struct {
	Current *Cycle        `json:"current"`
	Queue   []Document    `json:"queue,omitempty"`
	Last    *ledger.Entry `json:"last"`
	// Running is the hook running now ("phase/name"), if any.
	Running string `json:"running,omitempty"`
}

// StatusFromFile reads the state file directly, for the CLI when the daemon
// is not running.
func StatusFromFile(stateDir string) (Status, error) {
	st, err := readState(stateDir)
	if err != nil {
		return Status{}, err
	}
	return Status{Current: st.Current, Queue: st.Queue, Last: st.Last}, nil
}
