package ledger

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/patchd/patchd/agent/atomicfile"
	"github.com/patchd/patchd/agent/safeopen"
)

// FileName is the ledger's name inside the state directory.
const FileName = "ledger.jsonl"

// HookRun is the record of one hook's last run in a cycle.
type HookRun struct {
	Phase      string    `json:"phase"`
	Name       string    `json:"name"`
	Outcome    string    `json:"outcome"`
	ExitCode   int       `json:"exit_code"`
	Attempt    int       `json:"attempt"`
	Start      time.Time `json:"start,omitzero"`
	Duration   float64   `json:"duration_seconds"`
	StdoutTail string    `json:"stdout_tail,omitempty"`
	StderrTail string    `json:"stderr_tail,omitempty"`
	Error      string    `json:"error,omitempty"`
}

// Entry is one finished cycle: one line of ledger.jsonl.
type Entry struct {
	CycleID       string    `json:"cycle_id"`
	Trigger       string    `json:"trigger"`
	Opened        time.Time `json:"opened"`
	Closed        time.Time `json:"closed"`
	DocumentID    string    `json:"document_id,omitempty"`
	DocumentName  string    `json:"document_name,omitempty"`
	CommandID     string    `json:"command_id,omitempty"`
	AssociationID string    `json:"association_id,omitempty"`
	Operation     string    `json:"operation,omitempty"`
	InstanceID    string    `json:"instance_id,omitempty"`
	// Status is the document's last status as the agent wrote it; Result is
	// what hooks were told (PATCHD_RESULT).
	Status string `json:"status,omitempty"`
	Result string `json:"result"`
	// ResultReason says why Result is unknown (PATCHD_RESULT_REASON).
	ResultReason string `json:"result_reason,omitempty"`
	Rebooted     bool   `json:"rebooted"`
	// Also lists patch commands that started and ended while this cycle was
	// open; its hooks covered them.
	Also     []string  `json:"also,omitempty"`
	Hooks    []HookRun `json:"hooks"`
	Packages Changes   `json:"packages"`
	// PackagesError says why the package change is unknown, when it is.
	PackagesError string `json:"packages_error,omitempty"`
	// HooksOmitted counts hook records left out to keep the entry within
	// MaxEntryBytes (thousands of hooks); the cycle's log has them all.
	HooksOmitted int `json:"hooks_omitted,omitempty"`
}

// Bounds of what one entry holds. Hook output is whatever a hook printed,
// and JSON spells a control byte in six bytes: unbounded, a few thousand
// hooks printing binary noise made lines of tens of MiB.
const (
	// MaxEntryBytes bounds one encoded entry; Append sheds hook output,
	// then hook records, to stay under it.
	MaxEntryBytes = 1 << 20
	// MaxLineBytes is the longest line Read and Append parse. A longer
	// line (written by hand, or by a patchd before these bounds) is
	// skipped and counted as bad, and the lines after it are read.
	MaxLineBytes = 16 << 20
	// MaxTailBytes bounds each output tail of a hook record.
	MaxTailBytes = 4096
	// MaxTextBytes bounds a hook's name and error text.
	MaxTextBytes = 1024
)

// CompactRun returns h bounded for storage: control characters other than
// tab, newline and carriage return become U+FFFD, as does invalid UTF-8,
// so that no byte costs six in JSON; the tails keep their last
// MaxTailBytes, the name and error their first MaxTextBytes.
func CompactRun(h HookRun) HookRun {
	h.Phase = clean(h.Phase, MaxTextBytes, false)
	h.Name = clean(h.Name, MaxTextBytes, false)
	h.Outcome = clean(h.Outcome, MaxTextBytes, false)
	h.Error = clean(h.Error, MaxTextBytes, false)
	h.StdoutTail = clean(h.StdoutTail, MaxTailBytes, true)
	h.StderrTail = clean(h.StderrTail, MaxTailBytes, true)
	return h
}

// clean replaces control characters and invalid UTF-8, then cuts s to max
// bytes at a character boundary, keeping its end (tail) or its start.
func clean(s string, max int, tail bool) string {
	if len(s) > 4*max {
		// Cut first so that a huge string is not mapped whole; the final
		// cut below is exact.
		if tail {
			s = s[len(s)-4*max:]
		} else {
			s = s[:4*max]
		}
	}
	s = strings.ToValidUTF8(s, "\uFFFD")
	s = strings.Map(func(r rune) rune {
		if r == '\t' || r == '\n' || r == '\r' || !unicode.IsControl(r) {
			return r
		}
		return '\uFFFD'
	}, s)
	if len(s) <= max {
		return s
	}
	if tail {
		i := len(s) - max
		for i < len(s) && !utf8.RuneStart(s[i]) {
			i++
		}
		return s[i:]
	}
	i := max
	for i > 0 && !utf8.RuneStart(s[i]) {
		i--
	}
	return s[:i]
}

// Bound returns e encoded as one line of at most MaxEntryBytes (without
// the newline). Every hook record is compacted; if the entry is still too
// large, the output tails of successful hooks go, then all tails, then the
// hook records from the end, counted in HooksOmitted.
func Bound(e Entry) ([]byte, error) {
	hs := make([]HookRun, len(e.Hooks))
	for i, h := range e.Hooks {
		hs[i] = CompactRun(h)
	}
	e.Hooks = hs
	for _, s := range []*string{&e.CycleID, &e.Trigger, &e.DocumentID, &e.DocumentName, &e.CommandID, &e.AssociationID,
		&e.Operation, &e.InstanceID, &e.Status, &e.Result, &e.PackagesError} {
		*s = clean(*s, MaxTextBytes, false)
	}
	line, err := marshal(e)
	if err != nil || len(line) <= MaxEntryBytes {
		return line, err
	}
	for _, all := range []bool{false, true} {
		for i := range e.Hooks {
			if all || e.Hooks[i].Outcome == "success" {
				e.Hooks[i].StdoutTail, e.Hooks[i].StderrTail = "", ""
			}
		}
		if line, err = marshal(e); err != nil || len(line) <= MaxEntryBytes {
			return line, err
		}
	}
	// Each record is now small: keep as many from the start as fit at
	// their average size, with a margin, so that this ends in a few rounds.
	for len(line) > MaxEntryBytes && len(e.Hooks) > 0 {
		keep := min(len(e.Hooks)-1, int(int64(len(e.Hooks))*MaxEntryBytes*9/10/int64(len(line))))
		e.HooksOmitted += len(e.Hooks) - keep
		e.Hooks = e.Hooks[:keep]
		if line, err = marshal(e); err != nil {
			return nil, err
		}
	}
	if len(line) > MaxEntryBytes {
		// Only the package changes are left to blame; keep their counts.
		e.Packages = Changes{}
		e.PackagesError = "package changes too many to record in the ledger"
		line, err = marshal(e)
	}
	return line, err
}

// marshal encodes e on one line without HTML escaping: '<', '>' and '&' in
// hook output stay one byte each instead of six.
func marshal(e Entry) ([]byte, error) {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(e); err != nil {
		return nil, err
	}
	return bytes.TrimSuffix(buf.Bytes(), []byte{'\n'}), nil
}

// Append adds e to the ledger at path, keeping at most max entries (the
// oldest go first). The whole file is rewritten with atomicfile so a crash
// leaves either the old ledger or the new one: one cycle a few times a month
// makes the rewrite cheap, and a torn append could otherwise lose the line
// that matters most. The old lines are copied as they are, whatever their
// length or content: a bad line never stops a new entry.
func Append(path string, e Entry, max int) error {
	line, err := Bound(e)
	if err != nil {
		return fmt.Errorf("ledger %s: encode: %w", path, err)
	}
	if max < 1 {
		max = 1
	}
	f, err := openLedger(path)
	if err != nil {
		return err
	}
	var idx []span
	if f != nil {
		defer f.Close()
		if idx, err = index(f); err != nil {
			return fmt.Errorf("ledger %s: %w", path, err)
		}
	}
	if keep := max - 1; len(idx) > keep {
		idx = idx[len(idx)-keep:]
	}
	err = atomicfile.WriteFrom(path, 0o600, func(w io.Writer) error {
		for _, s := range idx {
			if _, err := io.Copy(w, io.NewSectionReader(f, s.off, s.n)); err != nil {
				return err
			}
			if _, err := w.Write([]byte{'\n'}); err != nil {
				return err
			}
		}
		_, err := w.Write(append(line, '\n'))
		return err
	})
	if err != nil {
		return fmt.Errorf("ledger: %w", err)
	}
	return nil
}

// Read returns the last n entries (all when n <= 0), oldest first. Lines
// that do not parse (edited by hand, or longer than MaxLineBytes) are
// skipped and counted in bad; the lines after them are read.
func Read(path string, n int) (entries []Entry, bad int, err error) {
	f, err := openLedger(path)
	if err != nil || f == nil {
		return nil, 0, err
	}
	defer f.Close()
	err = eachLine(f, func(l []byte) {
		var e Entry
		if l == nil || json.Unmarshal(l, &e) != nil {
			bad++
			return
		}
		entries = append(entries, e)
		if n > 0 && len(entries) > 2*n {
			entries = append(entries[:0], entries[len(entries)-n:]...)
		}
	})
	if err != nil {
		return nil, bad, fmt.Errorf("ledger %s: %w", path, err)
	}
	if n > 0 && len(entries) > n {
		entries = entries[len(entries)-n:]
	}
	return entries, bad, nil
}

// openLedger opens the ledger for reading; nil when it does not exist.
// Anything but a regular file is refused without blocking on it.
func openLedger(path string) (*os.File, error) {
	f, err := safeopen.Open(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("ledger: %w", err)
	}
	return f, nil
}

// span is one non-empty line of the file: where it starts and its length
// without the newline.
type span struct{ off, n int64 }

// index lists the non-empty lines of f, of any length, reading it once with
// a bounded buffer.
func index(f *os.File) ([]span, error) {
	var idx []span
	br := bufio.NewReaderSize(f, 64*1024)
	var off int64
	cur := span{off: 0}
	blank := true
	for {
		chunk, err := br.ReadSlice('\n')
		n := int64(len(chunk))
		body := chunk
		end := err == nil
		if end {
			body = chunk[:len(chunk)-1]
		}
		if len(bytes.TrimSpace(body)) > 0 {
			blank = false
		}
		cur.n += int64(len(body))
		off += n
		if end || (err == io.EOF && cur.n > 0) {
			if !blank {
				idx = append(idx, cur)
			}
			cur, blank = span{off: off}, true
		}
		switch {
		case err == nil, errors.Is(err, bufio.ErrBufferFull):
		case err == io.EOF:
			return idx, nil
		default:
			return nil, err
		}
	}
}

// eachLine calls fn with each non-empty line of r, trimmed; a line longer
// than MaxLineBytes is not held in memory: fn gets nil for it.
func eachLine(r io.Reader, fn func(line []byte)) error {
	br := bufio.NewReaderSize(r, 64*1024)
	var buf []byte
	over := false
	for {
		chunk, err := br.ReadSlice('\n')
		if !over {
			if len(buf)+len(chunk) > MaxLineBytes+1 {
				over, buf = true, nil
			} else {
				buf = append(buf, chunk...)
			}
		}
		if err == nil || (err == io.EOF && (len(buf) > 0 || over)) {
			if over {
				fn(nil)
			} else if l := bytes.TrimSpace(buf); len(l) > 0 {
				fn(l)
			}
			buf, over = buf[:0], false
		}
		switch {
		case err == nil, errors.Is(err, bufio.ErrBufferFull):
		case err == io.EOF:
			return nil
		default:
			return err
		}
	}
}
