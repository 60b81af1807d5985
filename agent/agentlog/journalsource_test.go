package agentlog

import (
	"context"
	"encoding/json"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/patchd/patchd/agent/agentlog/journaltest"
	"github.com/patchd/patchd/agent/atomicfile"
)

// journalRun is one run of a JournalReader, as patchd's daemon runs it.
type journalRun struct {
	t      *testing.T
	cancel context.CancelFunc
	done   chan error
	events chan Event
	// persisted gets every cursor the reader writes.
	persisted chan string
}

func startJournalReader(t *testing.T, j *journaltest.Journal, state string) *journalRun {
	t.Helper()
	run := &journalRun{t: t, done: make(chan error, 1), events: make(chan Event, 1000), persisted: make(chan string, 1000)}
	r, err := NewJournalReader(JournalOptions{
		Command:   j.Journalctl(),
		StatePath: state,
		Sink:      func(e Event) { run.events <- e.Clone() },
		IdleFlush: 50 * time.Millisecond,
	})
	if err != nil {
		t.Fatal(err)
	}
	r.onPersist = func(c string) { run.persisted <- c }
	ctx, cancel := context.WithCancel(context.Background())
	run.cancel = cancel
	go func() { run.done <- r.Run(ctx) }()
	t.Cleanup(func() { run.stop() })
	return run
}

func (r *journalRun) stop() {
	if r.cancel == nil {
		return
	}
	r.cancel()
	r.cancel = nil
	select {
	case err := <-r.done:
		if err != nil {
			r.t.Errorf("Run: %v", err)
		}
	case <-time.After(20 * time.Second):
		r.t.Fatal("the journal reader did not stop within 20s of its cancel")
	}
}

// expect waits for exactly the events want ("<kind> <message>"), in order.
func (r *journalRun) expect(want ...string) {
	r.t.Helper()
	for i, w := range want {
		select {
		case e := <-r.events:
			if got := string(e.Kind) + " " + e.Message; got != w {
				r.t.Fatalf("event %d: got %q, want %q", i+1, got, w)
			}
			if e.File != JournalFile {
				r.t.Errorf("event %d: File %q, want %q", i+1, e.File, JournalFile)
			}
		case <-time.After(20 * time.Second):
			r.t.Fatalf("event %d (%q) did not come within 20s", i+1, w)
		}
	}
}

// none checks that no event is waiting.
func (r *journalRun) none() {
	r.t.Helper()
	select {
	case e := <-r.events:
		r.t.Fatalf("unexpected event %s %q", e.Kind, e.Message)
	default:
	}
}

// waitCursor waits until the reader persists the cursor of the journal's
// last entry: it has caught up, and a restart goes on after that entry.
func (r *journalRun) waitCursor(j *journaltest.Journal) {
	r.t.Helper()
	out, err := exec.Command("journalctl", "--directory="+j.Dir, "--output=json", "--lines=1").Output()
	if err != nil {
		r.t.Fatal(err)
	}
	var last journalEntry
	if err := json.Unmarshal(out, &last); err != nil || last.Cursor == "" {
		r.t.Fatalf("journalctl --lines=1: %v, %q", err, out)
	}
	for {
		select {
		case c := <-r.persisted:
			if c == last.Cursor {
				return
			}
		case <-time.After(20 * time.Second):
			r.t.Fatalf("the reader did not persist the cursor %s within 20s", last.Cursor)
		}
	}
}

// TestJournalReaderRestart: the reader begins at the journal's end, hands
// out the agent's entries with their continuation lines (each its own
// journal entry, as the agent's stdout is) and systemd's lines about the
// unit, and across a stop and a start, with entries written while it was
// down, loses and repeats nothing.
func TestJournalReaderRestart(t *testing.T) {
	j := journaltest.New(t)
	state := filepath.Join(t.TempDir(), CursorFile)
	j.Write(journaltest.Agent("2024-10-21 09:00:00 INFO [amazon-ssm-agent] history, not replayed"))

	run := startJournalReader(t, j, state)
	run.waitCursor(j) // the first start recorded the end
	j.Write(
		journaltest.Systemd("Started amazon-ssm-agent.service - amazon-ssm-agent."),
		journaltest.Agent("2024-10-21 10:00:00 INFO [amazon-ssm-agent] amazon-ssm-agent - v3.3.1142.0"),
		journaltest.Agent("2024-10-21 10:00:01 ERROR [amazon-ssm-agent] [CredentialRefresher] Retrieve credentials produced error: EC2RoleRequestError: no EC2 instance role found"),
		journaltest.Agent("caused by: RequestError: send request failed"),
		journaltest.Agent("caused by: Get \"http://169.254.169.254/latest/meta-data/iam/security-credentials/\": dial tcp 169.254.169.254:80: i/o timeout"),
		journaltest.Agent("2024-10-21 10:00:02 INFO [ssm-agent-worker] [MessageService] [EngineProcessor] sending document: d-1 complete response"),
	)
	run.expect(
		"agent_start Started amazon-ssm-agent.service - amazon-ssm-agent.",
		"agent_start [amazon-ssm-agent] amazon-ssm-agent - v3.3.1142.0",
		"network_error [amazon-ssm-agent] [CredentialRefresher] Retrieve credentials produced error: EC2RoleRequestError: no EC2 instance role found",
		"command_end [ssm-agent-worker] [MessageService] [EngineProcessor] sending document: d-1 complete response",
	)
	// A multi-line entry still open at the stop is handed out by the stop.
	j.Write(
		journaltest.Agent("2024-10-21 10:00:03 WARN [amazon-ssm-agent] [EC2RoleProvider] Failed to connect to Systems Manager with instance profile role credentials. Err: x"),
	)
	run.expect("credentials_error [amazon-ssm-agent] [EC2RoleProvider] Failed to connect to Systems Manager with instance profile role credentials. Err: x")
	run.stop()
	run.none()

	// Down: the agent goes on logging, and a continuation of the entry
	// handed out before the stop arrives.
	j.Write(
		journaltest.Agent("\tstatus code: 400, request id: 1"),
		journaltest.Agent("2024-10-21 10:00:04 INFO [amazon-ssm-agent] got signal:terminated value: terminated"),
		journaltest.Systemd("Stopping amazon-ssm-agent.service - amazon-ssm-agent..."),
		journaltest.Agent("2024-10-21 10:00:05 INFO [amazon-ssm-agent] Stopping Core Agent"),
	)
	run2 := startJournalReader(t, j, state)
	run2.expect(
		"agent_stop [amazon-ssm-agent] got signal:terminated value: terminated",
		"agent_stop Stopping amazon-ssm-agent.service - amazon-ssm-agent...",
		"agent_stop [amazon-ssm-agent] Stopping Core Agent",
	)
	run2.waitCursor(j)
	run2.stop()
	run2.none()

	// A third start: the first event it hands out is the next line, so
	// nothing before it came again.
	run3 := startJournalReader(t, j, state)
	j.Write(journaltest.Agent("2024-10-21 10:01:00 INFO [amazon-ssm-agent] Starting Core Agent"))
	run3.expect("agent_start [amazon-ssm-agent] Starting Core Agent")
	run3.stop()
	run3.none()
}

// TestJournalReaderCorruptCursor: a corrupt cursor file is reported and the
// reader begins at the journal's end, as on a first start.
func TestJournalReaderCorruptCursor(t *testing.T) {
	j := journaltest.New(t)
	state := filepath.Join(t.TempDir(), CursorFile)
	j.Write(journaltest.Agent("2024-10-21 09:00:00 INFO [amazon-ssm-agent] Starting Core Agent"))
	if err := atomicfile.WriteFile(state, []byte(`{"version":1,"cursor":`), 0o600); err != nil {
		t.Fatal(err)
	}
	run := startJournalReader(t, j, state)
	run.waitCursor(j)
	j.Write(journaltest.Agent("2024-10-21 10:00:00 INFO [amazon-ssm-agent] Bye."))
	run.expect("agent_stop [amazon-ssm-agent] Bye.")
	run.stop()
	run.none()
}

// TestJournalReaderLongEntry: an entry too long to read is skipped and
// counted, and the entries after it are read as usual.
func TestJournalReaderLongEntry(t *testing.T) {
	j := journaltest.New(t)
	state := filepath.Join(t.TempDir(), CursorFile)
	j.Write(journaltest.Agent("2024-10-21 09:00:00 INFO [amazon-ssm-agent] history"))
	run := startJournalReader(t, j, state)
	run.waitCursor(j)
	j.Write(
		journaltest.Agent("2024-10-21 10:00:00 INFO [amazon-ssm-agent] Stopping Core Agent "+strings.Repeat("x", maxJournalLine)),
		journaltest.Agent("2024-10-21 10:00:01 INFO [amazon-ssm-agent] Bye."),
	)
	run.expect("agent_stop [amazon-ssm-agent] Bye.")
	run.stop()
	run.none()
}

// TestJournalReaderNeedsJournalctl: a missing journalctl is an error at
// start-up that names the setting.
func TestJournalReaderNeedsJournalctl(t *testing.T) {
	_, err := NewJournalReader(JournalOptions{Command: []string{"/nonexistent/journalctl"}, StatePath: "x", Sink: func(Event) {}})
	if err == nil || !strings.Contains(err.Error(), "agent_log.journalctl") {
		t.Fatalf("err = %v, want one naming agent_log.journalctl", err)
	}
}
