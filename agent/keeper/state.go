package keeper

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"time"

	"github.com/patchd/patchd/agent/atomicfile"
	"github.com/patchd/patchd/agent/safeopen"
)

// Reason is why the agent is restarted; the label of
// patchd_agent_restarts_total.
type Reason string

const (
	RoleChanged      Reason = "role_changed"
	CredentialsStuck Reason = "credentials_stuck"
	Manual           Reason = "manual"
)

// Reasons lists every reason, for metrics that must show zeros.
var Reasons = []Reason{RoleChanged, CredentialsStuck, Manual}

// Record is one restart attempt.
type Record struct {
	Time   time.Time `json:"time"`
	Reason Reason    `json:"reason"`
	Detail string    `json:"detail,omitempty"`
	// OK is set once the agent was seen active again; Error says why not.
	OK    bool   `json:"ok"`
	Error string `json:"error,omitempty"`
}

// Pending is a restart waiting for its moment.
type Pending struct {
	Reason Reason    `json:"reason"`
	Detail string    `json:"detail,omitempty"`
	Since  time.Time `json:"since"`
	// Deferred: documents were in current/ when it was due; DeferredSince
	// is when that was first seen (agent.max_defer counts from it).
	Deferred      bool      `json:"deferred,omitempty"`
	DeferredSince time.Time `json:"deferred_since,omitzero"`
	// Refused: the hourly limit held it back.
	Refused bool `json:"refused,omitempty"`
	// WaitingCredentials: IMDS did not serve credentials for the role yet.
	WaitingCredentials bool `json:"waiting_credentials,omitempty"`
}

// StateFileName is the keeper's state file inside the state directory.
const StateFileName = "keeper.json"

// State is keeper.json. It is written before each restart, so a patchd that
// dies mid-restart still counts it against the hourly limit, and a pending
// restart survives a patchd restart.
type State struct {
	// Restarts are the attempts of the last hour (the sliding window of
	// agent.max_restarts_per_hour).
	Restarts []Record `json:"restarts"`
	Last     *Record  `json:"last,omitempty"`
	Pending  *Pending `json:"pending,omitempty"`
	// AgentVersion is the version from the agent's last start banner.
	AgentVersion string `json:"agent_version,omitempty"`
}

// maxStateFileSize bounds the keeper state file; it holds at most an
// hour of restart records.
const maxStateFileSize = 4 << 20

// LoadState reads path; a missing file is an empty state.
func LoadState(path string) (State, error) {
	var s State
	data, err := safeopen.ReadFile(path, maxStateFileSize)
	if errors.Is(err, fs.ErrNotExist) {
		return s, nil
	}
	if err != nil {
		return s, fmt.Errorf("keeper state %s: %w", path, err)
	}
	if err := json.Unmarshal(data, &s); err != nil {
		return State{}, fmt.Errorf("keeper state %s: %w (delete it to start afresh; the hourly restart count is then reset)", path, err)
	}
	return s, nil
}

// SaveState writes path durably.
func SaveState(path string, s State) error {
	return atomicfile.WriteJSON(path, s, 0o600)
}

// within returns the restarts after since.
func within(rs []Record, since time.Time) []Record {
	var out []Record
	for _, r := range rs {
		if r.Time.After(since) {
			out = append(out, r)
		}
	}
	return out
}
