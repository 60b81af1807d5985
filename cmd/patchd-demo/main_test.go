package main

import (
	"context"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/patchd/patchd/agent/testbin"
)

// patchdBin is the real patchd, built once for the package's tests.
var patchdBin string

func TestMain(m *testing.M) {
	testbin.Main(m, testbin.Build{Name: "patchd", Pkg: "../patchd", Out: &patchdBin})
}

// The demo plays its three scenes against the real binary, in well under
// the minute `make demo` promises, and the hooks printed what each phase
// should have run, once, with the reboot seen by post-patch.
func TestDemo(t *testing.T) {
	hookOutput.lines = nil
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	start := time.Now()
	if err := run(ctx, patchdBin, false); err != nil {
		t.Fatalf("demo: %v", err)
	}
	if took := time.Since(start); took > 60*time.Second {
		t.Errorf("demo took %s, want under a minute", took)
	}
	lines := slices.Clone(hookOutput.lines)
	for _, want := range []string{
		"pre-patch/10-drain: draining " + instanceID,
		"pre-patch/20-snapshot: ",
		"pre-reboot/10-flush: ",
		"post-patch/10-undrain: back into the load balancer (result=success rebooted=1)",
	} {
		n := 0
		for _, l := range lines {
			if strings.HasPrefix(l, want) {
				n++
			}
		}
		if n != 1 {
			t.Errorf("hook line %q printed %d times, want once; all:\n%s", want, n, strings.Join(lines, "\n"))
		}
	}
	if len(lines) != 4 {
		t.Errorf("%d hook lines, want 4 (the Scan runs none):\n%s", len(lines), strings.Join(lines, "\n"))
	}
}
