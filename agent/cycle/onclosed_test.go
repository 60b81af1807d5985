package cycle

import (
	"context"
	"path/filepath"
	"testing"
	"time"

	"github.com/jonboulle/clockwork"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/patchd/patchd/agent/ledger"
)

// OnClosed hears of every closed cycle once, after its ledger entry is
// written: what it reads from the ledger is the cycle it was told of.
func TestOnClosedAfterTheLedger(t *testing.T) {
	h := &harness{t: t, dir: t.TempDir(), agent: t.TempDir(), runner: &fakeRunner{hooks: allHooks}, pkgs: &fakePkgs{},
		clock: clockwork.NewFakeClockAt(time.Date(2026, 11, 1, 10, 0, 0, 0, time.UTC)),
		set:   Settings{FailsafeAge: 3 * time.Hour, PostPatchRetries: 0, PostPatchRetryBackoff: time.Minute, LedgerMaxEntries: 10}}
	type heard struct {
		entry  ledger.Entry
		inFile string
	}
	got := make(chan heard, 10)
	e, err := New(Options{StateDir: h.dir, AgentData: h.agent, Runner: h.runner, Packages: h.pkgs,
		Settings: func() Settings { return h.set }, Reg: prometheus.NewRegistry(), Clock: h.clock,
		StopBound: time.Minute, BootID: func() string { return "boot-1" },
		OnClosed: func(en ledger.Entry) {
			last, _, _ := ledger.Read(filepath.Join(h.dir, ledger.FileName), 1)
			in := ""
			if len(last) == 1 {
				in = last[0].CycleID
			}
			got <- heard{en, in}
		}})
	if err != nil {
		t.Fatal(err)
	}
	h.e = e
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- e.Run(ctx) }()
	defer func() { cancel(); <-done }()

	h.present("c1", true)
	h.send(install("c1", "seen", "InProgress"))
	if len(got) != 0 {
		t.Fatal("told of a cycle that is still open")
	}
	h.present("c1", false)
	h.send(install("c1", "gone", "Success"))
	h.send(install("c1", "gone", "Success")) // a late repeat closes nothing
	if n := len(got); n != 1 {
		t.Fatalf("told %d times, want once", n)
	}
	hd := <-got
	if hd.entry.CommandID != "c1" || hd.entry.Result != ResultSuccess || hd.inFile != hd.entry.CycleID {
		t.Errorf("told of %+v; the ledger's last cycle then was %q", hd.entry, hd.inFile)
	}
}
