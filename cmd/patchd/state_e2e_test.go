package main

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/patchd/patchd/agent/cycle"
	"github.com/patchd/patchd/agent/ledger"
	"github.com/patchd/patchd/agent/ssm"
	"github.com/patchd/patchd/agent/ssm/ssmsim"
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

// patchd SIGKILLed during a post-patch hook, outside systemd: the hook's
// process group survives it. The restarted patchd waits for that orphaned
// run to end before it runs the hook again, so the two never overlap.
//
// "recorded": the kill comes after the hook's process group was recorded;
// "at once": as soon as the hook runs, maybe before that record's fsync,
// when the restarted patchd finds the run by its environment instead.
func TestKilledDuringHookDoesNotRunItTwiceAtOnce(t *testing.T) {
	t.Parallel()
	for _, waitRecord := range []bool{true, false} {
		name := map[bool]string{true: "recorded", false: "at once"}[waitRecord]
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			killedDuringHook(t, waitRecord)
		})
	}
}

func killedDuringHook(t *testing.T, waitRecord bool) {
	e := newCycleEnv(t)
	marks := filepath.Join(e.tr.Root, "marks")
	release := filepath.Join(e.tr.Root, "release")
	must(t, os.WriteFile(filepath.Join(e.tr.Hooks, "post-patch", "05-slow"), []byte("#!/bin/sh\n"+
		"echo \"start $$ $PATCHD_ATTEMPT\" >> "+marks+"\n"+
		"while [ ! -e "+release+" ]; do sleep 0.05; done\n"+
		"echo \"end $$ $PATCHD_ATTEMPT\" >> "+marks+"\n"), 0o755))
	readMarks := func() []string {
		data, _ := os.ReadFile(marks)
		return strings.Fields(strings.ReplaceAll(string(data), "\n", " | "))
	}
	lines := func() []string {
		data, _ := os.ReadFile(marks)
		return strings.Split(strings.TrimSpace(string(data)), "\n")
	}
	t.Cleanup(func() {
		// Whatever happens, no hook outlives the test.
		must(t, os.WriteFile(release, nil, 0o644))
	})
	e.start(0)
	d, err := e.agent.Submit(ssmsim.RunPatchBaseline("Install", "NoReboot"))
	must(t, err)
	must(t, d.Start())
	eventually(t, 60*time.Second, "pre-patch", func() bool { return e.phaseCount("pre-patch") == 2 })
	must(t, d.Finish(ssm.StatusSuccess))
	eventually(t, 60*time.Second, "the slow post-patch hook to start", func() bool { return len(readMarks()) > 0 })
	eventually(t, 60*time.Second, "the hook's process group to be recorded", func() bool {
		if !waitRecord {
			return true
		}
		st, err := cycle.StatusFromFile(e.tr.State)
		if err != nil || st.Current == nil || st.Current.Phases["post-patch"] == nil {
			return false
		}
		for _, h := range st.Current.Phases["post-patch"].Hooks {
			if h.Name == "05-slow" && h.Process != nil {
				return true
			}
		}
		return false
	})

	must(t, e.p.cmd.Process.Kill())
	err = <-e.p.done
	e.p.done <- err
	e.start(0)
	eventually(t, 60*time.Second, "patchd to wait for the orphaned run (or to run the hook again)", func() bool {
		return e.logHas("waiting for it to end before running the hook again") || len(lines()) > 1
	})
	if l := lines(); len(l) != 1 {
		t.Fatalf("the hook ran again while its first run was still going: %q", l)
	}
	must(t, os.WriteFile(release, nil, 0o644))
	eventually(t, 60*time.Second, "the cycle to close", func() bool { return e.closed(1) })
	l := lines()
	if len(l) != 4 || !strings.HasPrefix(l[0], "start ") || !strings.HasSuffix(l[0], " 1") ||
		!strings.HasPrefix(l[1], "end ") || strings.TrimPrefix(l[1], "end ") != strings.TrimPrefix(l[0], "start ") ||
		!strings.HasPrefix(l[2], "start ") || !strings.HasSuffix(l[2], " 2") || !strings.HasPrefix(l[3], "end ") {
		t.Errorf("hook runs overlap or are missing, want start/end of attempt 1 then of attempt 2:\n%s", strings.Join(l, "\n"))
	}
	if !e.logHas("the hook's earlier run has ended") {
		t.Errorf("no log line says the orphaned run ended")
	}
	e.expect(1, 0, 1)
}

// The state directory on a full filesystem (a tiny tmpfs; root only): a
// cycle still runs and closes, the failed writes are logged once each
// rather than at every tick, and the ledger entry is written once space
// returns.
func TestFullStateDirectory(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("mounting a tmpfs needs root")
	}
	t.Parallel()
	e := newCycleEnv(t)
	must(t, os.MkdirAll(e.tr.State, 0o700))
	if err := syscall.Mount("tmpfs", e.tr.State, "tmpfs", 0, "size=512k,mode=0700"); err != nil {
		t.Skipf("mount tmpfs: %v", err)
	}
	t.Cleanup(func() { _ = syscall.Unmount(e.tr.State, syscall.MNT_DETACH) })
	filler := filepath.Join(e.tr.State, "filler")
	fill := func() {
		f, err := os.Create(filler)
		must(t, err)
		defer f.Close()
		chunk := make([]byte, 4096)
		for {
			if _, err := f.Write(chunk); err != nil {
				if !errors.Is(err, syscall.ENOSPC) {
					t.Fatal(err)
				}
				return
			}
		}
	}
	fill()
	e.start(0)
	// Lines in the agent's log make the tailer's offsets dirty: with the
	// disk full it retries them, without an error line at every tick.
	logPath := filepath.Join(e.tr.AgentLogs, "amazon-ssm-agent.log")
	for i := range 20 {
		f, err := os.OpenFile(logPath, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o644)
		must(t, err)
		fmt.Fprintf(f, "2026-12-07 06:00:%02d INFO [ssm-agent-worker] line %d\n", i, i)
		f.Close()
	}
	if code, out, errOut := e.gate("pre-patch", "--wait-for-patch"); code != 0 {
		t.Fatalf("gate pre-patch on a full disk: exit %d\n%s%s", code, out, errOut)
	}
	if code, out, errOut := e.gate("post-patch", "--result=success"); code != 0 {
		t.Fatalf("gate post-patch on a full disk: exit %d\n%s%s", code, out, errOut)
	}
	eventually(t, 60*time.Second, "the ledger failure to be logged", func() bool { return e.logHas("cannot write the ledger") })
	if n := len(e.ledgerQuiet()); n != 0 {
		t.Fatalf("%d ledger entries on a full disk", n)
	}
	must(t, os.Remove(filler))
	// Any event retries the waiting entry; the gate is one.
	eventually(t, 60*time.Second, "the waiting ledger entry to be written", func() bool {
		_, _, _ = e.gate("post-patch")
		return len(e.ledgerQuiet()) == 1
	})
	out := e.p.stderr.String()
	if n := strings.Count(out, "cannot persist agent log offsets"); n > 1 {
		t.Errorf("%d error lines about the agent log offsets within a minute, want at most 1", n)
	}
	if n := strings.Count(out, "cannot write the ledger"); n != 1 {
		t.Errorf("%d error lines about the ledger, want 1", n)
	}
	e.expect(1, 0, 1)
}
