package main

// packaging/ssm/patchd-PatchWithHooksGated.json played by the simulated
// agent: the document's own step scripts run (with /usr/bin/patchd pointed
// at the binary under test) under a stand-in for ssm-document-worker, so
// what is tested is what ships.

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/patchd/patchd/agent/ssm"
	"github.com/patchd/patchd/agent/ssm/ssmsim"
)

const gatedDocument = "../../packaging/ssm/patchd-PatchWithHooksGated.json"

// gatedSteps reads the shipped document: each step's name, action and
// script.
func gatedSteps(t *testing.T) (steps []ssmsim.Step, scripts map[string]string) {
	t.Helper()
	data, err := os.ReadFile(gatedDocument)
	must(t, err)
	var doc struct {
		SchemaVersion string
		MainSteps     []struct {
			Action, Name string
			OnFailure    string `json:"onFailure"`
			Inputs       map[string]any
		} `json:"mainSteps"`
	}
	must(t, json.Unmarshal(data, &doc))
	scripts = map[string]string{}
	for _, s := range doc.MainSteps {
		steps = append(steps, ssmsim.Step{Name: s.Name, Action: s.Action, Inputs: s.Inputs, Platform: "Linux"})
		if rc, ok := s.Inputs["runCommand"].([]any); ok {
			var lines []string
			for _, l := range rc {
				lines = append(lines, l.(string))
			}
			scripts[s.Name] = strings.Join(lines, "\n") + "\n"
		}
	}
	if len(steps) != 3 || steps[2].Name != "patchdPostPatch" || scripts["patchdPostPatch"] == "" || steps[1].Action != "aws:runDocument" {
		t.Fatalf("%s: want gate, patch, post-patch gate as the last step; got %+v", gatedDocument, steps)
	}
	if doc.MainSteps[1].OnFailure != "exit" {
		t.Errorf("%s: the patch step must stop the document when it fails (onFailure: exit), or the last step would report success for a failed patch", gatedDocument)
	}
	return steps, scripts
}

// stepRunner runs a step's script as the agent would, under the document
// worker, with /usr/bin/patchd replaced by the binary under test.
func (e *cycleEnv) stepRunner(docID string) func(script string) *exec.Cmd {
	wrapper := filepath.Join(e.bin, "patchd")
	must(e.t, os.WriteFile(wrapper, []byte(fmt.Sprintf("#!/bin/sh\nexec %s \"$@\" %s\n", patchdBin, strings.Join(e.tr.flags(), " "))), 0o755))
	worker := filepath.Join(e.bin, "ssm-document-worker")
	must(e.t, os.WriteFile(worker, []byte("#!/bin/sh\nshift\n\"$@\"\n"), 0o755))
	return func(script string) *exec.Cmd {
		script = strings.ReplaceAll(script, "/usr/bin/patchd", wrapper)
		return exec.Command(worker, docID, "/bin/sh", "-c", script)
	}
}

func exitCode(t *testing.T, err error) int {
	t.Helper()
	if err == nil {
		return 0
	}
	if ee, ok := err.(*exec.ExitError); ok {
		return ee.ExitCode()
	}
	t.Fatal(err)
	return -1
}

func TestGatedDocument(t *testing.T) {
	for _, tc := range []struct {
		name                     string
		reboot, kill, failHealth bool
	}{
		{name: "hooks pass"},
		{name: "post-patch hook fails", failHealth: true},
		{name: "reboot", reboot: true},
		{name: "kill -9 before the last step", kill: true},
		{name: "reboot and kill -9 before the last step, post-patch hook fails", reboot: true, kill: true, failHealth: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			e := newCycleEnv(t)
			// One more post-patch hook, failing on demand; no retries, so
			// every hook's count is its number of post-patch runs.
			marker := filepath.Join(e.tr.Root, "unhealthy")
			must(t, os.WriteFile(filepath.Join(e.tr.Hooks, "post-patch", "30-health"),
				[]byte(fmt.Sprintf("#!/bin/sh\necho \"$PATCHD_PHASE/30-health result=$PATCHD_RESULT\" >> %s\ntest ! -e %s\n", e.counts, marker)), 0o755))
			if tc.failHealth {
				must(t, os.WriteFile(marker, nil, 0o644))
			}
			must(t, os.WriteFile(e.tr.Config, []byte(testIMDSConfig+"hooks:\n  post_patch_retries: 0\n"), 0o644))
			e.start(0)

			steps, scripts := gatedSteps(t)
			d, err := e.agent.Submit(ssmsim.Spec{DocumentName: "patchd-PatchWithHooksGated", SchemaVersion: "2.2", Steps: steps})
			must(t, err)
			must(t, d.Start())
			run := e.stepRunner(d.ID())

			must(t, d.RunStep("patchdPrePatch"))
			out, err := run(scripts["patchdPrePatch"]).CombinedOutput()
			if code := exitCode(t, err); code != 0 {
				t.Fatalf("pre-patch step: exit %d\n%s", code, out)
			}
			must(t, d.FinishStep("patchdPrePatch", ssm.StatusSuccess, 0, string(out)))

			must(t, d.RunStep("patch"))
			if tc.reboot {
				must(t, d.RequestReboot("patch"))
				e.waitFor("pre-reboot", func() bool { return e.phaseDone("pre-reboot") })
				e.stop()
				e.start(0)
				must(t, d.Resume())
			}
			must(t, d.FinishStep("patch", ssm.StatusSuccess, 0, "patched\n"))

			must(t, d.RunStep("patchdPostPatch"))
			step := run(scripts["patchdPostPatch"])
			var stepOut syncBuffer
			step.Stdout, step.Stderr = &stepOut, &stepOut
			if tc.kill {
				// patchd dies between the patch step and the last one; the
				// step finds it unreachable and waits until systemd
				// (here: the test) has started it again.
				must(t, e.p.cmd.Process.Signal(syscall.SIGKILL))
				eventually(t, 30*time.Second, "patchd to die", e.p.exited)
				must(t, step.Start())
				eventually(t, 60*time.Second, "the step to find patchd unreachable", func() bool {
					return strings.Contains(stepOut.String(), "patchd gate post-patch:")
				})
				e.start(0)
			} else {
				must(t, step.Start())
			}
			done := make(chan error, 1)
			go func() { done <- step.Wait() }()
			var code int
			select {
			case err := <-done:
				code = exitCode(t, err)
			case <-time.After(2 * time.Minute):
				_ = step.Process.Kill()
				t.Fatalf("the post-patch step did not end:\n%s", stepOut.String())
			}
			want := 0
			if tc.failHealth {
				want = 1
			}
			if code != want {
				t.Fatalf("post-patch step: exit %d, want %d\n%s", code, want, stepOut.String())
			}
			status := ssm.StatusSuccess
			if code != 0 {
				status = ssm.StatusFailed
			}
			must(t, d.FinishStep("patchdPostPatch", status, code, stepOut.String()))
			must(t, d.Finish(status))

			// A second run to its end: patchd has seen this document go,
			// and must not have run post-patch for it again.
			e.runSentinel(1)
			reboots := 0
			if tc.reboot {
				reboots = 1
			}
			e.expect(2, reboots, 2)
			if n := e.count("post-patch/30-health"); n != 2 {
				t.Errorf("post-patch/30-health ran %d times, want once per cycle:\n%s", n, strings.Join(e.runs(), "\n"))
			}
			en := e.ledger()
			if len(en) != 2 {
				t.Fatalf("ledger: %d entries", len(en))
			}
			l := en[0]
			if l.Trigger != "gate" || l.DocumentID != d.ID() || l.Result != "success" || l.Rebooted != tc.reboot {
				t.Errorf("ledger entry: trigger %s document %s result %s rebooted %v", l.Trigger, l.DocumentID, l.Result, l.Rebooted)
			}
			if got := e.line("post-patch/10-undrain"); !strings.Contains(got, "result=success") {
				t.Errorf("post-patch env: %s", got)
			}
		})
	}
}
