package hoststate

import (
	"context"
	"errors"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/jonboulle/clockwork"

	"github.com/patchd/patchd/agent/safeopen"
)

// FIFOs at host state's own state file and at the patch summary are
// refused, not waited on.
func TestFIFOsAreRefused(t *testing.T) {
	fh := newFixtureHost(t)
	for _, p := range []string{filepath.Join(fh.state, StateFile), filepath.Join(fh.patchDir, PatchSummaryFile)} {
		if err := syscall.Mkfifo(p, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	done := make(chan error, 1)
	go func() {
		h := fh.new(clockwork.NewFakeClockAt(t0))
		done <- h.checkSummary(fh.cfg())
	}()
	select {
	case err := <-done:
		if !errors.Is(err, safeopen.ErrNotRegular) {
			t.Fatalf("checkSummary with a FIFO = %v, want ErrNotRegular", err)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("host state blocked on a FIFO")
	}
}

// A query that prints more than the bound is an error, and what is kept
// stays within the bound.
func TestQueryOutputIsBounded(t *testing.T) {
	fh := newFixtureHost(t)
	fh.script(t, "uname", `/usr/bin/head -c 3000000 /dev/zero`)
	r := execRunner{timeout: time.Minute, lookPath: fh.lookPath, maxOutput: 1 << 20}
	res, err := r.Run(context.Background(), "uname", "-r")
	if err == nil || !strings.Contains(err.Error(), "printed more than 1 MiB") {
		t.Fatalf("err = %v, want one saying the output is too large", err)
	}
	if len(res.Stdout) > 1<<20 {
		t.Fatalf("kept %d bytes of output", len(res.Stdout))
	}
}
