package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// `make demo` is the README's first command: run it as a newcomer would, in
// a fresh clone of this repository (committed files only, nothing built),
// so that a file the demo needs but git does not have, or a Makefile step
// that only works in a used tree, fails here. It shares the Go build cache,
// so it costs about one demo run.
func TestMakeDemoFromCleanClone(t *testing.T) {
	if testing.Short() {
		t.Skip("clones the repository and runs make demo")
	}
	for _, tool := range []string{"git", "make"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Fatalf("%s is needed to run make demo from a clone: %v (make deps installs it)", tool, err)
		}
	}
	repo, err := filepath.Abs("../..")
	if err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command("git", "-C", repo, "-c", "safe.directory="+repo, "rev-parse", "--is-inside-work-tree").CombinedOutput(); err != nil {
		t.Skipf("%s is not a git checkout (%v: %s): nothing to clone", repo, err, strings.TrimSpace(string(out)))
	}
	clone := filepath.Join(t.TempDir(), "patchd")
	if out, err := exec.Command("git", "-c", "safe.directory=*", "clone", "--quiet", "--no-hardlinks", repo, clone).CombinedOutput(); err != nil {
		t.Fatalf("git clone %s: %v\n%s", repo, err, out)
	}
	cmd := exec.Command("make", "demo")
	cmd.Dir = clone
	// Only what a newcomer's shell has: no GOFLAGS or make variables from
	// the test's caller.
	cmd.Env = cleanEnv(os.Environ())
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("make demo in a clean clone: %v\n%s", err, out)
	}
	for _, want := range []string{
		"patch cycle closed result=success rebooted=true",
		"amazon-ssm-agent restarted and active reason=role_changed",
		"nothing left running.",
	} {
		if !strings.Contains(string(out), want) {
			t.Errorf("make demo output lacks %q:\n%s", want, out)
		}
	}
}

// cleanEnv drops the variables a test run or make may have set that a
// newcomer's shell would not have.
func cleanEnv(env []string) []string {
	var out []string
	for _, kv := range env {
		name, _, _ := strings.Cut(kv, "=")
		switch {
		case name == "GOFLAGS", name == "MAKEFLAGS", name == "MFLAGS", name == "MAKELEVEL", strings.HasPrefix(name, "GOTEST"):
			continue
		}
		out = append(out, kv)
	}
	return out
}
