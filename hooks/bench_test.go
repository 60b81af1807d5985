package hooks

import (
	"context"
	"fmt"
	"os/exec"
	"path/filepath"
	"testing"
)

// benchTree is 20 trivial hooks, named so run-parts accepts them too.
func benchTree(b *testing.B) string {
	b.Helper()
	root := filepath.Join(b.TempDir(), "hooks.d")
	for _, p := range Phases {
		if err := mkdirMode(filepath.Join(root, string(p))); err != nil {
			b.Fatal(err)
		}
	}
	for i := range 20 {
		if err := writeMode(filepath.Join(root, "pre-patch", fmt.Sprintf("%02d-hook", i)), "#!/bin/sh\nexit 0\n"); err != nil {
			b.Fatal(err)
		}
	}
	return root
}

// BenchmarkRunPhase20 is one pre-patch phase of 20 trivial hooks, in
// process (no patchd start-up); compare with BenchmarkRunParts20.
func BenchmarkRunPhase20(b *testing.B) {
	root := benchTree(b)
	r := NewRunner(Options{}, nil)
	for b.Loop() {
		res, err := r.RunPhase(context.Background(), root, Env{Phase: PrePatch}, PhaseOptions{})
		if err != nil || len(res) != 20 || !PhaseSucceeded(res) {
			b.Fatalf("%v %+v", err, res)
		}
	}
}

// BenchmarkRunParts20 runs Debian's run-parts on the same tree.
func BenchmarkRunParts20(b *testing.B) {
	rp, err := exec.LookPath("run-parts")
	if err != nil {
		b.Skip("run-parts (debianutils) is not installed")
	}
	dir := filepath.Join(benchTree(b), "pre-patch")
	for b.Loop() {
		if out, err := exec.Command(rp, "--exit-on-error", dir).CombinedOutput(); err != nil {
			b.Fatalf("%v: %s", err, out)
		}
	}
}
