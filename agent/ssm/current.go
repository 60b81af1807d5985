package ssm

import (
	"os"
	"path/filepath"
	"sort"
)

// StateDir is where the agent keeps a document's state for instance id.
func StateDir(agentData, instanceID string, f Folder) string {
	return filepath.Join(agentData, instanceID, "document", "state", string(f))
}

// ListFolder returns the paths of the state files in folder f under every
// instance-id directory of agentData (stale ids included: a file anywhere
// in current/ means a document may be running). A missing tree is empty,
// not an error: the agent may not be installed yet.
func ListFolder(agentData string, f Folder) ([]string, error) {
	matches, err := filepath.Glob(filepath.Join(agentData, "*", "document", "state", string(f), "*"))
	if err != nil {
		return nil, err
	}
	out := matches[:0]
	for _, m := range matches {
		if fi, err := os.Lstat(m); err == nil && fi.Mode().IsRegular() {
			out = append(out, m)
		}
	}
	sort.Strings(out)
	return out, nil
}
