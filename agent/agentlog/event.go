// Package agentlog follows amazon-ssm-agent's log files across rotation and
// classifies every line into events (SSM-AGENT-FACTS.md "Log event kinds").
package agentlog

import "time"

// Kind is a log event kind.
type Kind string

const (
	Health           Kind = "health"
	AgentStart       Kind = "agent_start"
	AgentStop        Kind = "agent_stop"
	CommandStart     Kind = "command_start"
	CommandEnd       Kind = "command_end"
	Reboot           Kind = "reboot"
	CredentialsError Kind = "credentials_error"
	NetworkError     Kind = "network_error"
	Other            Kind = "other"
)

// Kinds lists every kind, for metrics that must show zeros.
var Kinds = []Kind{Health, AgentStart, AgentStop, CommandStart, CommandEnd, Reboot, CredentialsError, NetworkError, Other}

// Event is one classified log entry (a first line and its continuations).
type Event struct {
	Time    time.Time // the entry's own timestamp; zero when it has none
	File    string    // base name of the file it came from
	Level   string    // TRACE..CRITICAL, or "-" for none
	Kind    Kind
	Message string // the entry's first line, without timestamp and level
	// Extracted facts, empty when the entry has none.
	AgentVersion string        // from a start banner
	CommandID    string        // from aws.ssm.<CommandID>.<InstanceID> and similar
	DocumentID   string        // from [ssm-document-worker] [<DocumentID>] and similar
	Backoff      time.Duration // from "Sleeping for <d> before retrying retrieve credentials"
	// Pos is where the entry ends in its file, set by a Tailer (zero from
	// a Classifier alone). A Journal records it with the entry.
	Pos Position
}

// Position is a point in one followed file: the file's device and inode
// (unique among the files a Tailer has open) and a byte offset in it.
type Position struct {
	Dev, Inode uint64
	Offset     int64
}
