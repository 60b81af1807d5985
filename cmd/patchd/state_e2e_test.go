package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/patchd/patchd/agent/cycle"
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

// FIFOs at cycle.json and ledger.jsonl: patchd starts (the state FIFO is
// set aside), gates, and `patchd history` says what is wrong instead of
// waiting for a writer that never comes.
func TestFIFOStateFilesDoNotBlock(t *testing.T) {
	t.Parallel()
	e := newCycleEnv(t)
	must(t, os.MkdirAll(e.tr.State, 0o700))
	ledgerPath := filepath.Join(e.tr.State, ledger.FileName)
	must(t, syscall.Mkfifo(filepath.Join(e.tr.State, cycle.FileName), 0o600))
	must(t, syscall.Mkfifo(ledgerPath, 0o600))
	e.start(0)
	if !e.logHas("not a regular file") {
		t.Errorf("no log line names the FIFO state file")
	}
	if code, out, errOut := e.gate("pre-patch", "--wait-for-patch"); code != 0 {
		t.Fatalf("gate with FIFO state files: exit %d\n%s%s", code, out, errOut)
	}
	code, _, errOut := runPatchd(t, append([]string{"history"}, e.tr.flags()...)...)
	if code == 0 || !strings.Contains(errOut, ledgerPath) || !strings.Contains(errOut, "not a regular file") {
		t.Errorf("history on a FIFO ledger: exit %d, %q", code, errOut)
	}
}
