package ledger

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"time"

	"github.com/patchd/patchd/agent/atomicfile"
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
}

// Append adds e to the ledger at path, keeping at most max entries (the
// oldest go first). The whole file is rewritten with atomicfile so a crash
// leaves either the old ledger or the new one: one cycle a few times a month
// makes the rewrite cheap, and a torn append could otherwise lose the line
// that matters most.
func Append(path string, e Entry, max int) error {
	line, err := json.Marshal(e)
	if err != nil {
		return fmt.Errorf("ledger %s: encode: %w", path, err)
	}
	lines, err := readLines(path)
	if err != nil {
		return err
	}
	if max < 1 {
		max = 1
	}
	lines = append(lines, line)
	if len(lines) > max {
		lines = lines[len(lines)-max:]
	}
	var buf bytes.Buffer
	for _, l := range lines {
		buf.Write(l)
		buf.WriteByte('\n')
	}
	if err := atomicfile.WriteFile(path, buf.Bytes(), 0o600); err != nil {
		return fmt.Errorf("ledger: %w", err)
	}
	return nil
}

// Read returns the last n entries (all when n <= 0), oldest first. Lines
// that do not parse (edited by hand) are skipped and counted in bad.
func Read(path string, n int) (entries []Entry, bad int, err error) {
	lines, err := readLines(path)
	if err != nil {
		return nil, 0, err
	}
	for _, l := range lines {
		var e Entry
		if json.Unmarshal(l, &e) != nil {
			bad++
			continue
		}
		entries = append(entries, e)
	}
	if n > 0 && len(entries) > n {
		entries = entries[len(entries)-n:]
	}
	return entries, bad, nil
}

// readLines returns the non-empty lines of path; a missing file has none.
func readLines(path string) ([][]byte, error) {
	data, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("ledger %s: %w", path, err)
	}
	var lines [][]byte
	sc := bufio.NewScanner(bytes.NewReader(data))
	sc.Buffer(make([]byte, 64*1024), 16*1024*1024)
	for sc.Scan() {
		if l := bytes.TrimSpace(sc.Bytes()); len(l) > 0 {
			lines = append(lines, bytes.Clone(l))
		}
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("ledger %s: %w", path, err)
	}
	return lines, nil
}
