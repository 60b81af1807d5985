package main

import (
	"bytes"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/patchd/patchd/agent/ssm"
	"github.com/patchd/patchd/agent/testbin"
)

var simBin string

func TestMain(m *testing.M) {
	testbin.Main(m, testbin.Build{Name: "ssm-agent-sim", Pkg: ".", Out: &simBin})
}

type simEnv struct {
	t              *testing.T
	root, logs, id string
}

func (e simEnv) run(args ...string) (string, int) {
	e.t.Helper()
	cmd := exec.Command(simBin, append([]string{"--root", e.root, "--instance-id", e.id, "--log-dir", e.logs}, args...)...)
	var out, errOut bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errOut
	err := cmd.Run()
	var ee *exec.ExitError
	switch {
	case errors.As(err, &ee):
		return errOut.String(), ee.ExitCode()
	case err != nil:
		e.t.Fatal(err)
	}
	return strings.TrimSpace(out.String()), 0
}

func (e simEnv) ok(args ...string) string {
	e.t.Helper()
	out, code := e.run(args...)
	if code != 0 {
		e.t.Fatalf("ssm-agent-sim %v: exit %d: %s", args, code, out)
	}
	return out
}

func (e simEnv) state(folder ssm.Folder, id string) *ssm.DocumentState {
	e.t.Helper()
	s, err := ssm.ReadState(filepath.Join(ssm.StateDir(e.root, e.id, folder), id))
	if err != nil {
		e.t.Fatal(err)
	}
	return s
}

func TestScriptedRebootRun(t *testing.T) {
	dir := t.TempDir()
	e := simEnv{t: t, root: filepath.Join(dir, "ssm"), logs: filepath.Join(dir, "logs"), id: "i-0a1b2c3d4e5f60718"}
	id := e.ok("submit", "--template", "run-patch-baseline", "--operation", "Install", "--reboot-option", "RebootIfNeeded")
	if s := e.state(ssm.Pending, id); s.DocumentInformation.DocumentName != "AWS-RunPatchBaseline" || ssm.Classify(s, nil).Operation != "Install" {
		t.Fatalf("submitted: %+v", s.DocumentInformation)
	}
	e.ok("start", id)
	e.ok("step", id, "InProgress")
	e.ok("reboot", id)
	if s := e.state(ssm.Current, id); s.DocumentInformation.DocumentStatus != "SuccessAndReboot" || s.PluginStatuses()["PatchLinux"] != "SuccessAndReboot" {
		t.Fatalf("after reboot: %+v %v", s.DocumentInformation, s.PluginStatuses())
	}
	e.ok("resume", id)
	if s := e.state(ssm.Current, id); s.DocumentInformation.RunCount != 1 {
		t.Fatalf("after resume: RunCount %d", s.DocumentInformation.RunCount)
	}
	e.ok("rewrite", id, "--bytes", "50", "--complete-after", "1ms")
	if s := e.state(ssm.Current, id); s.DocumentInformation.RunCount != 1 {
		t.Fatalf("completed rewrite: %+v", s.DocumentInformation)
	}
	e.ok("rewrite", id, "--bytes", "50")
	if _, err := ssm.ReadState(filepath.Join(ssm.StateDir(e.root, e.id, ssm.Current), id)); err == nil {
		t.Fatalf("rewrite --bytes 50 left a parseable file")
	}
	// Like the agent after a crash in mid-write, the simulator cannot read
	// it back either.
	if out, code := e.run("finish", id); code != 1 || !strings.Contains(out, "unexpected end of JSON input") {
		t.Fatalf("finish on a half-written file: exit %d %q", code, out)
	}
	e.ok("corrupt", id) // moved without being read
	if _, err := os.Stat(filepath.Join(ssm.StateDir(e.root, e.id, ssm.Corrupt), id)); err != nil {
		t.Fatalf("corrupt: %v", err)
	}
	id = e.ok("submit")
	e.ok("start", id)
	e.ok("finish", id, "--status", "Failed")
	if out, code := e.run("finish", id); code != 1 || !strings.Contains(out, "no state file") {
		t.Fatalf("finishing a finished document: exit %d %q", code, out)
	}
	e.ok("log", "WARN", "EC2RoleProvider Failed to connect to Systems Manager with instance profile role credentials")
	e.ok("rotate-log")
	e.ok("log", "INFO", "Credentials ready")
	rolled, err := os.ReadFile(filepath.Join(e.logs, "amazon-ssm-agent.log.1"))
	if err != nil || !strings.Contains(string(rolled), "requested reboot, need to resume") || !strings.Contains(string(rolled), "WARN [amazon-ssm-agent] EC2RoleProvider") {
		t.Fatalf("rolled log: %v\n%s", err, rolled)
	}
	cur, err := os.ReadFile(filepath.Join(e.logs, "amazon-ssm-agent.log"))
	if err != nil || strings.Count(string(cur), "\n") != 1 || !strings.Contains(string(cur), "Credentials ready") {
		t.Fatalf("log after rotation: %v\n%s", err, cur)
	}
}

func TestTemplatesAndIDs(t *testing.T) {
	dir := t.TempDir()
	e := simEnv{t: t, root: filepath.Join(dir, "ssm"), logs: "", id: "mi-0123456789abcdef0"}
	for _, tc := range []struct {
		args []string
		op   string
	}{
		{[]string{"--template", "run-patch-baseline", "--operation", "Scan"}, "Scan"},
		{[]string{"--template", "run-patch-baseline-association", "--association-id", "3c5d7e9f-1a2b-4c3d-8e4f-5a6b7c8d9e0f"}, "Install"},
		{[]string{"--template", "apply-ansible-playbooks", "--check", "True"}, "Check"},
		{[]string{"--template", "apply-ansible-playbooks", "--check", "False"}, "Apply"},
		{[]string{"--template", "run-shell-script"}, ""},
		{[]string{"--template", "run-shell-script", "--document-name", "Acme-Patch", "--command-id", "11111111-2222-4333-8444-555555555555"}, ""},
	} {
		id := e.ok(append([]string{"submit"}, tc.args...)...)
		s := e.state(ssm.Pending, id)
		if got := ssm.Classify(s, nil).Operation; got != tc.op {
			t.Errorf("%v: operation %q, want %q", tc.args, got, tc.op)
		}
		if strings.Contains(strings.Join(tc.args, " "), "association") &&
			(!strings.HasPrefix(id, "3c5d7e9f-1a2b-4c3d-8e4f-5a6b7c8d9e0f.") || s.DocumentType != "Association") {
			t.Errorf("association id %q type %s", id, s.DocumentType)
		}
		if strings.Contains(strings.Join(tc.args, " "), "--command-id") && (id != "11111111-2222-4333-8444-555555555555" || s.DocumentInformation.DocumentName != "Acme-Patch") {
			t.Errorf("command id %q name %s", id, s.DocumentInformation.DocumentName)
		}
	}
	if out, code := e.run("log", "INFO", "x"); code != 1 || !strings.Contains(out, "--log-dir") {
		t.Errorf("log without --log-dir: exit %d %q", code, out)
	}
	if out, code := e.run("submit", "--template", "nope"); code != 2 || !strings.Contains(out, "nope") {
		t.Errorf("unknown template: exit %d %q", code, out)
	}
}

func TestRunPlaysAWholeRun(t *testing.T) {
	dir := t.TempDir()
	e := simEnv{t: t, root: filepath.Join(dir, "ssm"), logs: filepath.Join(dir, "logs"), id: "i-0a1b2c3d4e5f60718"}
	id := e.ok("run", "--pause", "0s", "--reboot")
	s := e.state(ssm.Current, id)
	if s.DocumentInformation.DocumentStatus != "SuccessAndReboot" {
		t.Fatalf("run --reboot: %s", s.DocumentInformation.DocumentStatus)
	}
	e.ok("resume", id)
	e.ok("finish", id)
	id = e.ok("--save-at-end-only", "submit")
	e.ok("--save-at-end-only", "start", id)
	e.ok("--save-at-end-only", "step", id, "InProgress")
	if st := e.state(ssm.Current, id).PluginStatuses(); len(st) != 0 {
		t.Errorf("--save-at-end-only wrote a step start: %v", st)
	}
	id = e.ok("run", "--pause", "0s", "--status", "Failed")
	if _, err := os.Stat(filepath.Join(ssm.StateDir(e.root, e.id, ssm.Current), id)); !os.IsNotExist(err) {
		t.Errorf("run without reboot leaves the state file: %v", err)
	}
}
