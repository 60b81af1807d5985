// Package imds watches the instance's IAM identity in the instance metadata
// service (IMDSv2): the instance profile from iam/info and the role name
// listed under iam/security-credentials/. amazon-ssm-agent takes its
// credentials from the same place and does not notice a new profile or role
// for up to half an hour (docs/agent-formats.md, "Credentials"), so a change seen
// here is what tells the keeper to restart it.
package imds

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"time"

	"github.com/patchd/patchd/agent/atomicfile"
	"github.com/patchd/patchd/agent/safeopen"
)

// Identity is what the agent's credentials hang on. Credential dates
// (LastUpdated, Expiration) are left out on purpose: they roll on normal
// rotation and are no reason to restart anything.
type Identity struct {
	InstanceProfileArn string `json:"instance_profile_arn,omitempty"`
	InstanceProfileID  string `json:"instance_profile_id,omitempty"`
	Role               string `json:"role,omitempty"`
}

// Attached reports whether the identity names an instance profile.
func (i Identity) Attached() bool {
	return i.InstanceProfileArn != "" || i.InstanceProfileID != "" || i.Role != ""
}

func (i Identity) String() string {
	if !i.Attached() {
		return "no instance profile"
	}
	return fmt.Sprintf("profile %s (%s) role %s", i.InstanceProfileArn, i.InstanceProfileID, i.Role)
}

// StateFileName is the watcher's state file inside the state directory.
const StateFileName = "role.json"

// State is what role.json keeps between runs, so that a change made while
// patchd was down is still seen as a change at start.
type State struct {
	// Profile is the last instance profile seen; empty when none was ever
	// seen (only then does attaching one count as a change).
	Profile Identity `json:"profile"`
	// Attached is whether the last known answer had a profile.
	Attached bool `json:"attached"`
	// Since is when this state was first observed.
	Since time.Time `json:"since"`
}

// maxStateFileSize bounds the role state file, a few lines of JSON.
const maxStateFileSize = 1 << 20

// LoadState reads path. A missing file gives ok=false: nothing is known yet,
// so the first answer is a baseline, not a change.
func LoadState(path string) (s State, ok bool, err error) {
	data, err := safeopen.ReadFile(path, maxStateFileSize)
	if errors.Is(err, fs.ErrNotExist) {
		return State{}, false, nil
	}
	if err != nil {
		return State{}, false, fmt.Errorf("role state %s: %w", path, err)
	}
	if err := json.Unmarshal(data, &s); err != nil {
		return State{}, false, fmt.Errorf("role state %s: %w (delete it; patchd takes the next IMDS answer as the baseline)", path, err)
	}
	return s, true, nil
}

// SaveState writes path durably.
func SaveState(path string, s State) error {
	return atomicfile.WriteJSON(path, s, 0o600)
}

// Decide compares an answer from IMDS (cur; not attached when IMDS says
// there is no profile) with the last known state. It returns the new state
// and, for a role change, why.
//
// A change is a different profile ARN, profile id or role than the last
// profile seen, or a profile where only "none" was ever seen. Losing the
// profile is not a change (restarting the agent cannot help it), and getting
// the same profile back is not one either: the agent's credential errors in
// between are the stuck-credentials rule's business.
func Decide(prev State, known bool, cur Identity, now time.Time) (next State, changed bool, why string) {
	next = prev
	if !cur.Attached() {
		if !known || prev.Attached {
			next.Attached = false
			next.Since = now
		}
		return next, false, ""
	}
	next.Profile, next.Attached = cur, true
	if !known || !prev.Attached || prev.Profile != cur {
		next.Since = now
	}
	switch {
	case !known:
		return next, false, ""
	case !prev.Profile.Attached():
		return next, true, "instance profile attached where there was none"
	case prev.Profile.InstanceProfileArn != cur.InstanceProfileArn || prev.Profile.InstanceProfileID != cur.InstanceProfileID:
		return next, true, fmt.Sprintf("instance profile changed from %s (%s) to %s (%s)",
			prev.Profile.InstanceProfileArn, prev.Profile.InstanceProfileID, cur.InstanceProfileArn, cur.InstanceProfileID)
	case prev.Profile.Role != cur.Role:
		return next, true, fmt.Sprintf("role changed from %s to %s", prev.Profile.Role, cur.Role)
	}
	return next, false, ""
}
