package agentlog

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"time"

	"github.com/jonboulle/clockwork"

	"github.com/patchd/patchd/agent/atomicfile"
)

// CursorFile is the journal cursor's file name inside the state directory.
const CursorFile = "agentlog-journal-cursor.json"

// JournalFile is the file label of the journal source's lines in the
// metrics and the File of its events.
const JournalFile = "journal"

// DefaultJournalctl selects the agent's entries: the unit of the deb and
// rpm packages and the snap's (Ubuntu). journalctl's --unit also matches
// systemd's own lines about the unit (Started, Stopping).
var DefaultJournalctl = []string{"journalctl",
	"--unit=amazon-ssm-agent.service", "--unit=snap.amazon-ssm-agent.amazon-ssm-agent.service"}

// JournalOptions configure a JournalReader.
type JournalOptions struct {
	// Command is journalctl and the arguments that choose the agent's
	// entries; the reader adds --follow --output=json and where to begin.
	// Default DefaultJournalctl.
	Command []string
	// StatePath is the cursor file (<state>/agentlog-journal-cursor.json).
	StatePath string
	// Sink, Logger and Metrics are as in Options. Metrics counts the lines
	// under the file label JournalFile.
	Sink    func(Event)
	Logger  *slog.Logger
	Metrics *Metrics
	// Clock defaults to the real clock.
	Clock clockwork.Clock
	// PersistInterval bounds how often the cursor is written while lines
	// flow (it is always written at stop). Default 1s.
	PersistInterval time.Duration
	// IdleFlush is how long an entry may wait for a continuation line
	// before it is handed out anyway. Default 500ms.
	IdleFlush time.Duration
	// RetryDelay is the wait before journalctl is started again after it
	// ended on its own. Default 5s.
	RetryDelay time.Duration
}

// JournalReader follows the agent's entries in the systemd journal, for
// hosts where the agent logs only there (its stdout under systemd, the
// snap). It runs journalctl --follow --output=json, so it needs no cgo and
// no libsystemd, and classifies each entry's MESSAGE as a line of the
// agent's log.
//
// Its position is journalctl's cursor, persisted like the tailer's offsets
// (atomic write, at most once per PersistInterval while lines flow, and at
// stop): a clean restart goes on after the last entry handed out, with
// nothing lost or repeated. After a crash the entries handed out since the
// last write come again (at most PersistInterval's worth). The first start,
// and a start with a corrupt cursor file, begin at the end of the journal:
// history is not replayed as fresh events.
type JournalReader struct {
	o   JournalOptions
	log *slog.Logger
	clk clockwork.Clock

	cls   Classifier
	lines *lineCounters
	// n is the number of lines fed to cls; cur and prev describe the last
	// two, for the cursor an emitted entry makes safe.
	n         int64
	cur, prev lineMark
	// safe is the cursor after which nothing handed out is left: where
	// the next start resumes.
	safe        string
	dirty       bool
	lastPersist time.Time
	lastData    time.Time
	// onPersist, when set (tests), gets each cursor written.
	onPersist func(string)
}

// lineMark is where a fed line came from: its journal entry's cursor,
// whether it was that entry's last line (a MESSAGE may hold several), and
// the cursor of the journal entry before.
type lineMark struct {
	cursor, before string
	last           bool
}

// journalState is what the cursor file holds.
type journalState struct {
	Version int    `json:"version"`
	Cursor  string `json:"cursor"`
}

// NewJournalReader checks o and returns a JournalReader; Run does the work.
func NewJournalReader(o JournalOptions) (*JournalReader, error) {
	if o.StatePath == "" || o.Sink == nil {
		return nil, errors.New("agentlog: StatePath and Sink are required")
	}
	if len(o.Command) == 0 {
		o.Command = DefaultJournalctl
	}
	if _, err := exec.LookPath(o.Command[0]); err != nil {
		return nil, fmt.Errorf("agent_log.source is journal, but %w (install systemd's journalctl, or set agent_log.journalctl)", err)
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.Clock == nil {
		o.Clock = clockwork.NewRealClock()
	}
	if o.PersistInterval <= 0 {
		o.PersistInterval = time.Second
	}
	if o.IdleFlush <= 0 {
		o.IdleFlush = 500 * time.Millisecond
	}
	if o.RetryDelay <= 0 {
		o.RetryDelay = 5 * time.Second
	}
	r := &JournalReader{o: o, log: o.Logger, clk: o.Clock, lines: o.Metrics.fileLines(JournalFile)}
	r.cls = Classifier{File: JournalFile, Emit: r.emit}
	return r, nil
}

// Run follows the journal until ctx is done, then hands out the entry it
// holds and persists the cursor.
func (r *JournalReader) Run(ctx context.Context) error {
	if c, ok := r.loadCursor(); ok {
		r.safe = c
	} else {
		// Begin at the end: until journalctl can say where that is,
		// nothing is read (reading from the start would replay history
		// as fresh events).
		for {
			c, err := r.tailCursor(ctx)
			if ctx.Err() != nil {
				return nil
			}
			if err == nil {
				r.safe, r.dirty = c, true
				r.persist(true)
				break
			}
			r.log.Error("cannot read where the journal ends; trying again", "err", err, "in", r.o.RetryDelay)
			select {
			case <-ctx.Done():
				return nil
			case <-r.clk.After(r.o.RetryDelay):
			}
		}
	}
	for {
		err := r.follow(ctx)
		if ctx.Err() != nil {
			r.cls.Flush()
			r.o.Metrics.publish()
			r.persist(true)
			return nil
		}
		// journalctl ended on its own: what it left pending is read again
		// from the safe cursor by the next one.
		r.cls.Reset()
		r.n = 0
		r.persist(true)
		r.log.Warn("journalctl ended; starting it again", "err", err, "in", r.o.RetryDelay)
		select {
		case <-ctx.Done():
			return nil
		case <-r.clk.After(r.o.RetryDelay):
		}
	}
}

// args are journalctl's arguments to follow from the safe cursor.
func (r *JournalReader) args(follow bool) []string {
	a := append([]string(nil), r.o.Command[1:]...)
	a = append(a, "--output=json", "--no-pager", "--all")
	if follow {
		a = append(a, "--follow")
	}
	if r.safe != "" {
		a = append(a, "--after-cursor="+r.safe)
	} else {
		a = append(a, "--lines=all")
	}
	return a
}

// tailCursor is the cursor of the agent's last entry in the journal now,
// "" when it has none.
func (r *JournalReader) tailCursor(ctx context.Context) (string, error) {
	a := append([]string(nil), r.o.Command[1:]...)
	a = append(a, "--output=json", "--no-pager", "--lines=1")
	out, err := r.command(ctx, a).Output()
	if err != nil {
		return "", fmt.Errorf("%s: %w", r.o.Command[0], err)
	}
	var last string
	for _, l := range bytes.Split(out, []byte("\n")) {
		var e journalEntry
		if len(bytes.TrimSpace(l)) > 0 && json.Unmarshal(l, &e) == nil && e.Cursor != "" {
			last = e.Cursor
		}
	}
	return last, nil
}

func (r *JournalReader) command(ctx context.Context, args []string) *exec.Cmd {
	cmd := exec.CommandContext(ctx, r.o.Command[0], args...)
	cmd.Cancel = func() error { return cmd.Process.Signal(syscall.SIGTERM) }
	cmd.WaitDelay = 5 * time.Second
	cmd.Stderr = &limitedBuffer{max: 4 << 10}
	return cmd
}

// follow runs one journalctl --follow until it ends or ctx is done.
func (r *JournalReader) follow(ctx context.Context) error {
	cmd := r.command(ctx, r.args(true))
	out, err := cmd.StdoutPipe()
	if err != nil {
		return err
	}
	if err := cmd.Start(); err != nil {
		return err
	}
	// The reader goroutine is owned here: it ends when journalctl's
	// stdout does (at its exit, or its kill when ctx is done), and follow
	// waits for it before it returns.
	lines := make(chan []byte, 64)
	go func() {
		defer close(lines)
		br := bufio.NewReaderSize(out, maxJournalLine)
		skipping := false
		for {
			b, err := br.ReadSlice('\n')
			switch {
			case errors.Is(err, bufio.ErrBufferFull):
				// An entry longer than maxJournalLine (a huge field
				// logged through the native API): dropped whole, its
				// JSON could not be read anyway.
				skipping = true
				continue
			case skipping:
				skipping = false
				lines <- nil
			case len(b) > 0:
				lines <- append([]byte(nil), b...)
			}
			if err != nil {
				return
			}
		}
	}()
	tick := r.clk.NewTicker(min(r.o.IdleFlush, r.o.PersistInterval) / 2)
	defer tick.Stop()
	for {
		select {
		case b, ok := <-lines:
			if !ok {
				werr := cmd.Wait()
				if msg := strings.TrimSpace(cmd.Stderr.(*limitedBuffer).String()); msg != "" && werr != nil {
					werr = fmt.Errorf("%w: %s", werr, msg)
				}
				if werr == nil {
					werr = errors.New("journalctl exited")
				}
				return werr
			}
			r.entry(b)
			if len(lines) == 0 {
				r.o.Metrics.publish()
				r.persist(false)
			}
		case <-tick.Chan():
			if _, ok := r.cls.Pending(); ok && r.clk.Since(r.lastData) >= r.o.IdleFlush {
				r.cls.Flush()
				r.o.Metrics.publish()
			}
			r.persist(false)
		case <-ctx.Done():
			// What is still in the channel was not handed out: the
			// cursor stays before it, and the next start reads it.
			for range lines {
			}
			_ = cmd.Wait()
			return ctx.Err()
		}
	}
}

// journalEntry is the part of journalctl's JSON that the reader uses.
type journalEntry struct {
	Cursor     string          `json:"__CURSOR"`
	Message    json.RawMessage `json:"MESSAGE"`
	Identifier string          `json:"SYSLOG_IDENTIFIER"`
	PID        string          `json:"_PID"`
}

// maxJournalLine bounds one line of journalctl's JSON: the agent's stdout
// lines are at most journald's LineMax (48 KiB), escaped.
const maxJournalLine = 1 << 20

// entry classifies one line of journalctl's output: a journal entry. nil
// is one that was too long.
func (r *JournalReader) entry(b []byte) {
	if b == nil {
		r.o.Metrics.truncatedLine()
		r.log.Warn("journalctl printed an entry longer than 1 MiB; skipped", "after_cursor", r.cur.cursor)
		return
	}
	var e journalEntry
	if err := json.Unmarshal(b, &e); err != nil || e.Cursor == "" {
		r.log.Warn("journalctl printed a line that is no journal entry; skipped", "line", truncate(b, 200), "err", err)
		return
	}
	r.lastData = r.clk.Now()
	msg := message(e.Message)
	// The agent's own lines are classified as its log has them; another
	// program's (systemd about the unit) keep their tag, so that they
	// stay entries of their own and systemd's start and stop are seen.
	var tag string
	if e.Identifier != "" && !strings.Contains(e.Identifier, "ssm") {
		tag = e.Identifier + "[" + e.PID + "]: "
	}
	// Every line of the journal entry before was fed already: its
	// cursor is complete.
	before := r.cur.cursor
	if r.n == 0 {
		before = r.safe
	}
	parts := bytes.Split(msg, []byte("\n"))
	if len(parts) > 1 && len(parts[len(parts)-1]) == 0 {
		parts = parts[:len(parts)-1]
	}
	for i, p := range parts {
		if len(p) > MaxLine {
			p = p[:MaxLine]
			r.o.Metrics.truncatedLine()
		}
		if tag != "" {
			p = append([]byte(tag), p...)
		}
		r.prev = r.cur
		r.cur = lineMark{cursor: e.Cursor, before: before, last: i == len(parts)-1}
		r.n++
		r.cls.Feed(p, r.n-1, r.n)
	}
}

// message is MESSAGE as bytes: journalctl writes it as a string, or as an
// array of bytes when it is not valid UTF-8, or null.
func message(raw json.RawMessage) []byte {
	raw = bytes.TrimSpace(raw)
	if len(raw) == 0 {
		return nil
	}
	switch raw[0] {
	case '"':
		var s string
		if json.Unmarshal(raw, &s) == nil {
			return []byte(s)
		}
	case '[':
		var a []int
		if json.Unmarshal(raw, &a) == nil {
			b := make([]byte, len(a))
			for i, v := range a {
				b[i] = byte(v)
			}
			return b
		}
	}
	return nil
}

// emit hands an entry out and moves the safe cursor past it.
func (r *JournalReader) emit(e Entry) {
	r.lines.entry(&e)
	m := r.cur
	if e.End != r.n {
		m = r.prev
	}
	if m.last {
		r.safe = m.cursor
	} else {
		r.safe = m.before
	}
	r.dirty = true
	if e.Tail {
		return
	}
	r.o.Metrics.event(&e.Event, r.clk.Now)
	r.o.Sink(e.Event)
}

// loadCursor reads the cursor file; false when there is none to go on from.
func (r *JournalReader) loadCursor() (string, bool) {
	data, err := os.ReadFile(r.o.StatePath)
	if errors.Is(err, os.ErrNotExist) {
		r.log.Info("no journal cursor yet; following the agent's journal from its end", "path", r.o.StatePath)
		return "", false
	}
	var st journalState
	if err == nil {
		dec := json.NewDecoder(bytes.NewReader(data))
		dec.DisallowUnknownFields()
		err = dec.Decode(&st)
		if err == nil && st.Version != stateVersion {
			err = fmt.Errorf("version %d, want %d", st.Version, stateVersion)
		}
	}
	if err != nil {
		r.log.Error("journal cursor file is unreadable or corrupt; following the agent's journal from its end (entries since the last run are not replayed)",
			"path", r.o.StatePath, "err", err)
		return "", false
	}
	return st.Cursor, true
}

func (r *JournalReader) persist(force bool) {
	if !r.dirty || (!force && r.clk.Since(r.lastPersist) < r.o.PersistInterval) {
		return
	}
	if err := atomicfile.WriteJSON(r.o.StatePath, journalState{Version: stateVersion, Cursor: r.safe}, 0o600); err != nil {
		r.log.Error("cannot persist the journal cursor; a restart may read entries again", "path", r.o.StatePath, "err", err)
		return
	}
	r.dirty = false
	r.lastPersist = r.clk.Now()
	if r.onPersist != nil {
		r.onPersist(r.safe)
	}
}

// limitedBuffer keeps the first max bytes written to it (journalctl's
// stderr, for the error message).
type limitedBuffer struct {
	bytes.Buffer
	max int
}

func (b *limitedBuffer) Write(p []byte) (int, error) {
	if room := b.max - b.Len(); room > 0 {
		b.Buffer.Write(p[:min(len(p), room)])
	}
	return len(p), nil
}

var _ io.Writer = (*limitedBuffer)(nil)

func truncate(b []byte, n int) string {
	if len(b) > n {
		b = b[:n]
	}
	return string(bytes.TrimSpace(b))
}
