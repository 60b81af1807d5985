// Package agentlog follows amazon-ssm-agent's log files across rotation and
// classifies every line into events (docs/agent-log-events.md defines the kinds).
package agentlog

import (
	"time"
	"unsafe"
)

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
//
// Message and the ids taken from it (AgentVersion, CommandID, DocumentID)
// of an event handed out by a Classifier or a Tailer are valid only during
// the call that hands it out (Classifier.Emit, Options.Sink), like
// bufio.Scanner.Bytes: they are views of the Classifier's own buffer, which
// the next line overwrites. Copying every message for the few events a
// consumer keeps was a fifth of the tailer's CPU time and nearly all of its
// garbage. A consumer that keeps an event, or one of those strings, past
// the call keeps Clone's copy. The other fields are values or strings that
// are never overwritten.
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

// Clone returns e with its own copy of Message and of the ids, so that it
// stays intact after the call that handed e out returns. The ids are
// substrings of Message and stay substrings of the copy: one allocation for
// all of them.
func (e Event) Clone() Event {
	n := len(e.Message)
	ids := [...]*string{&e.AgentVersion, &e.CommandID, &e.DocumentID}
	for _, s := range ids {
		if _, ok := within(*s, e.Message); !ok {
			n += len(*s)
		}
	}
	if n == 0 {
		return e
	}
	buf := make([]byte, 0, n)
	buf = append(buf, e.Message...)
	msg := unsafe.String(unsafe.SliceData(buf), len(e.Message))
	for _, s := range ids {
		if i, ok := within(*s, e.Message); ok {
			*s = msg[i : i+len(*s)]
			continue
		}
		at := len(buf)
		buf = append(buf, *s...)
		*s = unsafe.String(unsafe.SliceData(buf[at:]), len(*s))
	}
	e.Message = msg
	return e
}

// within reports whether s lies in m's memory and at which offset. An
// empty s is within anything, and copies as "" wherever it is.
func within(s, m string) (int, bool) {
	if len(s) == 0 {
		return 0, true
	}
	if len(m) == 0 {
		return 0, false
	}
	sp, mp := uintptr(unsafe.Pointer(unsafe.StringData(s))), uintptr(unsafe.Pointer(unsafe.StringData(m)))
	if sp < mp || sp+uintptr(len(s)) > mp+uintptr(len(m)) {
		return 0, false
	}
	return int(sp - mp), true
}
