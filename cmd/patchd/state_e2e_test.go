package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/patchd/patchd/agent/ledger"
)

// A 17 MiB line in the middle of the ledger: `patchd history` reports it,
// skips it, lists the cycles after it and exits 0.
func TestHistorySkipsAHugeLine(t *testing.T) {
	tr := newTestTree(t)
	if err := os.MkdirAll(tr.State, 0o700); err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	buf.WriteString(`{"cycle_id":"before","result":"success"}` + "\n")
	buf.WriteString(`{"cycle_id":"huge","hooks":[{"stderr_tail":"` + strings.Repeat(`\u0007`, 17<<20/6) + `"}]}` + "\n")
	buf.WriteString(`{"cycle_id":"after","result":"failed"}` + "\n")
	if err := os.WriteFile(filepath.Join(tr.State, ledger.FileName), buf.Bytes(), 0o600); err != nil {
		t.Fatal(err)
	}
	code, out, errOut := runPatchd(t, append([]string{"history", "--output=json", "-n", "0"}, tr.flags()...)...)
	if code != 0 {
		t.Fatalf("patchd history: exit %d: %s", code, errOut)
	}
	if !strings.Contains(out, `"cycle_id":"before"`) || !strings.Contains(out, `"cycle_id":"after"`) || strings.Contains(out, "huge") {
		t.Errorf("history lists:\n%.300s", out)
	}
	if !strings.Contains(errOut, "1 unreadable lines") {
		t.Errorf("history does not report the skipped line: %q", errOut)
	}
}
