package cycle

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/jonboulle/clockwork"

	"github.com/patchd/patchd/agent/ledger"
	"github.com/patchd/patchd/agent/safeopen"
	"github.com/patchd/patchd/hooks"
)

// newHarnessWith is newHarness with prepare run on the state directory
// before the engine starts.
func newHarnessWith(t *testing.T, r *fakeRunner, prepare func(dir string)) *harness {
	h := &harness{t: t, dir: t.TempDir(), agent: t.TempDir(), runner: r, pkgs: &fakePkgs{},
		clock: clockwork.NewFakeClockAt(time.Date(2026, 11, 1, 10, 0, 0, 0, time.UTC)),
		set:   Settings{FailsafeAge: 3 * time.Hour, PostPatchRetries: 2, PostPatchRetryBackoff: time.Minute, LedgerMaxEntries: 10}}
	h.pkgs.set(ledger.Package{Name: "bash", Version: "1", Arch: "amd64"})
	prepare(h.dir)
	h.start()
	t.Cleanup(h.stop)
	return h
}

func mkfifo(t *testing.T, path string) {
	t.Helper()
	if err := syscall.Mkfifo(path, 0o600); err != nil {
		t.Skipf("mkfifo: %v", err)
	}
}

// A FIFO at cycle.json would block a plain open for good (no writer ever
// comes): it is set aside like a corrupt file, and patchd starts and gates.
func TestFIFOStateFileIsSetAside(t *testing.T) {
	r := &fakeRunner{hooks: allHooks}
	h := newHarnessWith(t, r, func(dir string) { mkfifo(t, filepath.Join(dir, FileName)) })
	aside, err := os.Lstat(filepath.Join(h.dir, FileName+".corrupt"))
	if err != nil || aside.Mode()&os.ModeNamedPipe == 0 {
		t.Fatalf("the FIFO was not set aside: %v", err)
	}
	rep := h.e.Gate(context.Background(), GateRequest{Phase: "pre-patch", WaitForPatch: true})
	if !rep.OK {
		t.Fatalf("gate after a FIFO state file: %+v", rep)
	}
	if fi, err := os.Lstat(filepath.Join(h.dir, FileName)); err != nil || !fi.Mode().IsRegular() {
		t.Errorf("cycle.json after the gate: %v %v", fi, err)
	}
}

func TestLoadStateRefusesNonRegularAndOversized(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, FileName)
	// A directory cannot be read as a file; it is set aside too.
	if err := os.Mkdir(path, 0o700); err != nil {
		t.Fatal(err)
	}
	st, err := LoadState(path)
	if st == nil || err == nil || !strings.Contains(err.Error(), "not a regular file") || !strings.Contains(err.Error(), path) {
		t.Fatalf("LoadState(dir) = %v, %v", st, err)
	}
	// An oversized file is not read whole.
	if err := os.Remove(path + ".corrupt"); err != nil {
		t.Fatal(err)
	}
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := f.Truncate(MaxStateBytes + 1); err != nil {
		t.Fatal(err)
	}
	f.Close()
	st, err = LoadState(path)
	if st == nil || !errors.Is(err, safeopen.ErrTooLarge) {
		t.Fatalf("LoadState(oversized) = %v, %v", st, err)
	}
	if _, err := os.Stat(path + ".corrupt"); err != nil {
		t.Errorf("the oversized file was not set aside: %v", err)
	}
	// The CLI's read of the state says what is wrong, at once.
	mkfifo(t, path)
	if _, err := StatusFromFile(dir); !errors.Is(err, safeopen.ErrNotRegular) {
		t.Errorf("StatusFromFile(FIFO) = %v", err)
	}
}

// A FIFO at ledger.jsonl does not stop the cycle from closing.
func TestFIFOLedgerDoesNotBlockTheClose(t *testing.T) {
	r := &fakeRunner{hooks: map[hooks.Phase][]string{hooks.PrePatch: {"10-a"}, hooks.PostPatch: {"10-p"}}}
	h := newHarnessWith(t, r, func(dir string) { mkfifo(t, filepath.Join(dir, ledger.FileName)) })
	h.present("c1", true)
	h.send(install("c1", "seen", "InProgress"))
	h.present("c1", false)
	h.send(install("c1", "gone", "Success"))
	if st := h.e.Status(); st.Current != nil || st.Last == nil || st.Last.Result != ResultSuccess {
		t.Fatalf("the cycle did not close past a FIFO ledger: %+v", st)
	}
	h.counts(t, map[string]int{"pre-patch/10-a": 1, "post-patch/10-p": 1})
}
