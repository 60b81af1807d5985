// Package testbin builds the programs a package's tests run as processes
// (patchd itself, the simulated agent, the IMDS mock, the log tailer):
// once per test binary, into a temporary directory removed at the end. It
// is for tests only.
package testbin

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
)

// Build is one program to build.
type Build struct {
	// Name is the file name of the built program.
	Name string
	// Pkg is the package as `go build` takes it: an import path, or a
	// directory relative to the test's package.
	Pkg string
	// Flags go before -o (e.g. -race).
	Flags []string
	// Out receives the built program's path before the tests run.
	Out *string
}

// Main builds every program, runs the tests and exits with their code. A
// build that fails ends the test binary with go build's output: no test
// can run without its programs.
func Main(m *testing.M, builds ...Build) {
	dir, err := os.MkdirTemp("", "patchd-testbin-")
	if err != nil {
		fmt.Fprintln(os.Stderr, "testbin:", err)
		os.Exit(1)
	}
	for _, b := range builds {
		*b.Out = filepath.Join(dir, b.Name)
		args := append(append([]string{"build"}, b.Flags...), "-o", *b.Out, b.Pkg)
		build := exec.Command("go", args...)
		build.Stdout, build.Stderr = os.Stderr, os.Stderr
		if err := build.Run(); err != nil {
			fmt.Fprintf(os.Stderr, "testbin: building %s (%s): %v\n", b.Name, b.Pkg, err)
			os.RemoveAll(dir)
			os.Exit(1)
		}
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}
