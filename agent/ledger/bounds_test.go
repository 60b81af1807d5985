package ledger

import (
	"bytes"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"unicode/utf8"

	"github.com/patchd/patchd/agent/safeopen"
)

// A line longer than any scanner buffer in the middle of the ledger: the
// entries after it are read, it is counted as bad, and a new entry is
// appended behind it.
func TestHugeLineInTheMiddleLosesNothingAfterIt(t *testing.T) {
	path := filepath.Join(t.TempDir(), FileName)
	var buf bytes.Buffer
	buf.WriteString(`{"cycle_id":"before","result":"success"}` + "\n")
	buf.WriteString(`{"cycle_id":"huge","result":"success","hooks":[{"stdout_tail":"`)
	buf.Write(bytes.Repeat([]byte(`\u0001`), 17<<20/6))
	buf.WriteString(`"}]}` + "\n")
	buf.WriteString(`{"cycle_id":"after","result":"success"}` + "\n")
	if err := os.WriteFile(path, buf.Bytes(), 0o600); err != nil {
		t.Fatal(err)
	}
	got, bad, err := Read(path, 0)
	if err != nil || bad != 1 || len(got) != 2 || got[0].CycleID != "before" || got[1].CycleID != "after" {
		t.Fatalf("Read = %d entries, %d bad, %v; want before and after, 1 bad", len(got), bad, err)
	}
	if err := Append(path, Entry{CycleID: "new", Result: "success"}, 10); err != nil {
		t.Fatalf("Append behind a huge line: %v", err)
	}
	got, bad, err = Read(path, 0)
	if err != nil || bad != 1 || len(got) != 3 || got[2].CycleID != "new" {
		t.Fatalf("after Append: %d entries, %d bad, %v", len(got), bad, err)
	}
	if last, _, err := Read(path, 1); err != nil || len(last) != 1 || last[0].CycleID != "new" {
		t.Fatalf("Read(1) = %v, %v", last, err)
	}
	// The old lines are kept as they were, the huge one included, until
	// they rotate out.
	data, _ := os.ReadFile(path)
	if !bytes.HasPrefix(data, buf.Bytes()) {
		t.Error("Append changed the lines before the new entry")
	}
	if err := Append(path, Entry{CycleID: "newer"}, 2); err != nil {
		t.Fatal(err)
	}
	if got, bad, _ := Read(path, 0); bad != 0 || len(got) != 2 || got[0].CycleID != "new" {
		t.Errorf("after rotation: %v, %d bad", got, bad)
	}
}

func TestAppendWhenLastLineHasNoNewline(t *testing.T) {
	path := filepath.Join(t.TempDir(), FileName)
	if err := os.WriteFile(path, []byte("{\"cycle_id\":\"a\"}\n  \nnot json"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := Append(path, Entry{CycleID: "b"}, 10); err != nil {
		t.Fatal(err)
	}
	got, bad, err := Read(path, 0)
	if err != nil || bad != 1 || len(got) != 2 || got[1].CycleID != "b" {
		t.Errorf("Read = %v, %d bad, %v", got, bad, err)
	}
}

// Many hooks printing control bytes: the entry patchd writes stays within
// MaxEntryBytes, and what is kept says what was left out.
func TestEntryIsBounded(t *testing.T) {
	noise := strings.Repeat("\x01\x02<>&\xff", 1000) // 6,000 bytes, 36,000 escaped
	var e Entry
	e.CycleID = "c"
	for i := range 600 {
		e.Hooks = append(e.Hooks, HookRun{Phase: "post-patch", Name: strings.Repeat("\n", 1000) + strconv.Itoa(i),
			Outcome: []string{"success", "failed"}[i%2], StdoutTail: noise, StderrTail: noise, Error: noise})
	}
	line, err := Bound(e)
	if err != nil {
		t.Fatal(err)
	}
	if len(line) > MaxEntryBytes {
		t.Fatalf("entry is %d bytes, bound %d", len(line), MaxEntryBytes)
	}
	var back Entry
	if err := json.Unmarshal(line, &back); err != nil {
		t.Fatal(err)
	}
	if back.HooksOmitted == 0 || len(back.Hooks)+back.HooksOmitted != 600 {
		t.Errorf("kept %d hooks, omitted %d; want all 600 accounted for", len(back.Hooks), back.HooksOmitted)
	}
	if back.Hooks[0].Name != strings.Repeat("\n", 1000)+"0" {
		t.Errorf("a newline in a name is kept as a newline (JSON escapes it): %q", back.Hooks[0].Name)
	}
	path := filepath.Join(t.TempDir(), FileName)
	if err := Append(path, e, 5); err != nil {
		t.Fatal(err)
	}
	if got, bad, err := Read(path, 0); err != nil || bad != 0 || len(got) != 1 {
		t.Errorf("Read = %d entries, %d bad, %v", len(got), bad, err)
	}
}

func TestCompactRun(t *testing.T) {
	h := CompactRun(HookRun{Name: "a\x00b", StdoutTail: strings.Repeat("é", 5000) + "end\x1b[0m", Error: strings.Repeat("x", 5000)})
	if h.Name != "a\uFFFDb" {
		t.Errorf("name %q", h.Name)
	}
	if len(h.StdoutTail) > MaxTailBytes || !utf8.ValidString(h.StdoutTail) || !strings.HasSuffix(h.StdoutTail, "end\uFFFD[0m") {
		t.Errorf("tail: %d bytes, valid %v, end %q", len(h.StdoutTail), utf8.ValidString(h.StdoutTail), h.StdoutTail[len(h.StdoutTail)-10:])
	}
	if len(h.Error) != MaxTextBytes {
		t.Errorf("error: %d bytes", len(h.Error))
	}
	// Small, clean records are unchanged.
	ok := HookRun{Name: "10-ok", Outcome: "success", StdoutTail: "done\n\ttab\r\n"}
	if CompactRun(ok) != ok {
		t.Errorf("CompactRun changed a clean record: %+v", CompactRun(ok))
	}
}

// A FIFO at the ledger's path is refused at once, with the path named, on
// read and on append.
func TestFIFOLedgerIsRefusedWithoutBlocking(t *testing.T) {
	path := filepath.Join(t.TempDir(), FileName)
	if err := syscall.Mkfifo(path, 0o600); err != nil {
		t.Skipf("mkfifo: %v", err)
	}
	if _, _, err := Read(path, 0); !errors.Is(err, safeopen.ErrNotRegular) || !strings.Contains(err.Error(), path) {
		t.Errorf("Read(FIFO) = %v", err)
	}
	if err := Append(path, Entry{CycleID: "x"}, 5); !errors.Is(err, safeopen.ErrNotRegular) {
		t.Errorf("Append(FIFO) = %v", err)
	}
}

// '<', '>' and '&' are common in hook output (shell redirections, HTML):
// they cost one byte each in the ledger, not six.
func TestEntryDoesNotEscapeHTML(t *testing.T) {
	line, err := Bound(Entry{Hooks: []HookRun{{StdoutTail: strings.Repeat("<>&", 1000)}}})
	if err != nil {
		t.Fatal(err)
	}
	if len(line) > 3000+500 || !bytes.Contains(line, []byte("<>&<>&")) {
		t.Errorf("entry of %d bytes for a 3,000-byte tail", len(line))
	}
}
