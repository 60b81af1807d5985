// Package ssm faces amazon-ssm-agent's on-disk document state: it reads the
// state files (formats from the agent's source), watches the state folders,
// and says which documents are patch runs.
package ssm

import "time"

// Folder is one of the agent's document state folders.
type Folder string

const (
	Pending Folder = "pending"
	Current Folder = "current"
	Corrupt Folder = "corrupt"
)

// EventKind says what happened to a state file.
type EventKind string

const (
	// Seen: a state file appeared in pending/ or current/ (also at start-up
	// for files already there), or moved from pending/ to current/.
	Seen EventKind = "seen"
	// StatusChanged: the file was rewritten with another DocumentStatus,
	// another plugin status (e.g. SuccessAndReboot) or another RunCount (the
	// agent resumed the document after a restart or reboot).
	StatusChanged EventKind = "status_changed"
	// Gone: the file left current/ or pending/ (deleted: the run ended) or was
	// moved to corrupt/. The event carries the last status read: the agent
	// writes the final status and deletes the file right after, so that last
	// write may be missed; step statuses are written earlier, at each step's
	// end, and are seen.
	Gone EventKind = "gone"
)

// CommandEvent is what the command watcher tells the rest of patchd.
type CommandEvent struct {
	Kind       EventKind
	Time       time.Time
	InstanceID string // the <instance-id> folder (i-… or mi-…)
	Folder     Folder // where the file is now (for Gone: where it went; "" when deleted)
	Path       string
	// From the file's DocumentInformation (last good parse for Gone).
	DocumentID    string // file name: CommandID, or AssociationID.RunID
	CommandID     string
	AssociationID string
	RunID         string
	DocumentName  string
	DocumentType  string // SendCommand, Association, ...
	Status        string // DocumentStatus
	RunCount      int
	// PluginStatuses maps step name to its Result status, for steps that have one.
	PluginStatuses map[string]string
	// MessageID is aws.ssm.<CommandID or AssociationID>.<InstanceID>, the id
	// the agent's log lines carry.
	MessageID string
	// OrchestrationDirectory holds the steps' stdout/stderr; it outlives the
	// state file (kept for days).
	OrchestrationDirectory string
	// Patch is the classification of the document (see Classify).
	Patch PatchRun
}

// PatchRun says whether a document is a patch run and which operation.
type PatchRun struct {
	IsPatch bool
	// Operation is Install, Scan, or for Ansible "Check" (dry run) / "Apply".
	Operation string
	// OpensCycle is true when hooks must run (Install; Ansible not Check).
	OpensCycle bool
	// Reason explains the decision for logs, e.g. "operation not found in
	// step properties; treated as Install".
	Reason string
}
