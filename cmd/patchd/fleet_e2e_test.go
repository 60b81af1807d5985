package main

// The fleet view end to end: the real patchd, the simulated agent, a real
// IMDSv2 (amazon-ec2-metadata-mock) serving the role's credentials and the
// region, and a local SSM endpoint that validates every request.

import (
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/patchd/patchd/agent/compliance/ssmtest"
	"github.com/patchd/patchd/agent/inventory"
	"github.com/patchd/patchd/agent/ssm"
	"github.com/patchd/patchd/agent/ssm/ssmsim"
	"github.com/patchd/patchd/agent/uploads"
)

var imdsMockBin string

// startFleet runs patchd on e's tree with the given extra flags.
func (e *cycleEnv) startFleet(extra ...string) {
	t := e.t
	t.Helper()
	args := append(append([]string{"run"}, e.tr.flags()...), "--web.listen-address=", "--hooks.post-patch-retry-backoff=50ms", "--no-agent.restart")
	cmd := exec.Command(patchdBin, append(args, extra...)...)
	cmd.Env = append(os.Environ(), "PATH="+e.bin+":"+os.Getenv("PATH"), "AWS_REGION=", "AWS_ENDPOINT_URL_SSM=")
	p := &daemonProc{cmd: cmd, stderr: &syncBuffer{}, done: make(chan error, 1)}
	cmd.Stdout, cmd.Stderr = p.stderr, p.stderr
	must(t, cmd.Start())
	go func() { p.done <- cmd.Wait() }()
	t.Cleanup(func() {
		if !p.exited() {
			p.stop(t, os.Interrupt, 30*time.Second)
		}
		if t.Failed() {
			t.Logf("patchd output:\n%s", p.stderr.String())
		}
	})
	eventually(t, 60*time.Second, "patchd to start", func() bool {
		return p.exited() || strings.Contains(p.stderr.String(), "patchd started")
	})
	e.p = p
}

func (e *cycleEnv) installRun(closedBefore int) {
	e.t.Helper()
	d, err := e.agent.Submit(ssmsim.RunPatchBaseline("Install", "NoReboot"))
	must(e.t, err)
	must(e.t, d.Start())
	eventually(e.t, 60*time.Second, "pre-patch", func() bool { return e.phaseCount("pre-patch") == 2*(closedBefore+1) })
	must(e.t, d.Finish(ssm.StatusSuccess))
	eventually(e.t, 60*time.Second, "the cycle to close", func() bool { return e.closed(closedBefore + 1) })
}

func (e *cycleEnv) status() (statusReply, string) {
	e.t.Helper()
	code, out, errOut := runPatchd(e.t, append([]string{"status", "-o", "json"}, e.tr.flags()...)...)
	if code != 0 {
		e.t.Fatalf("patchd status: exit %d %s", code, errOut)
	}
	var st statusReply
	must(e.t, json.Unmarshal([]byte(out), &st))
	_, text, _ := runPatchd(e.t, append([]string{"status"}, e.tr.flags()...)...)
	return st, text
}

func TestFleetEndToEnd(t *testing.T) {
	t.Parallel()
	e := newCycleEnv(t)
	mock := ssmtest.StartIMDSMock(t, imdsMockBin)
	srv := ssmtest.New()
	defer srv.Close()
	// The role is not allowed yet.
	srv.Fail(ssmtest.AccessDenied)
	e.startFleet("--imds.endpoint="+mock, "--ssm.endpoint="+srv.URL, "--ssm.report=on")

	e.installRun(0)
	eventually(t, 60*time.Second, "the first report", func() bool { return srv.Attempts() == 1 })
	var st statusReply
	var text string
	eventually(t, 30*time.Second, "status to show the refusal", func() bool {
		st, text = e.status()
		return len(st.SSMReports) == 2 && st.SSMReports[1].Reason == uploads.ReasonAccessDenied
	})
	if !strings.Contains(text, "compliance") || !strings.Contains(text, "access_denied") || !strings.Contains(text, "ssm:PutComplianceItems") || !strings.Contains(text, "1 waiting") {
		t.Errorf("patchd status does not say why the compliance report failed:\n%s", text)
	}
	if n := strings.Count(e.p.stderr.String(), "refused the compliance report"); n != 1 {
		t.Errorf("AccessDenied logged %d times", n)
	}

	// The inventory file matches patchd history.
	hist := e.ledger()
	dir := filepath.Join(e.tr.AgentData, simInstance, "inventory", "custom")
	var cyc inventory.File
	data, err := os.ReadFile(filepath.Join(dir, inventory.CyclesFile))
	must(t, err)
	must(t, json.Unmarshal(data, &cyc))
	if len(cyc.Content) != 1 || cyc.Content[0]["CycleId"] != hist[0].CycleID || cyc.Content[0]["CommandId"] != hist[0].CommandID {
		t.Errorf("inventory %v, history %+v", cyc.Content, hist)
	}
	if st.SSMReports[0].LastSuccess.IsZero() || !strings.Contains(text, "inventory    last written") {
		t.Errorf("inventory status: %+v\n%s", st.SSMReports[0], text)
	}

	// The role is fixed; the next cycle's report goes through, signed with
	// the role's credentials from IMDS, for the region IMDS names.
	e.installRun(1)
	eventually(t, 60*time.Second, "the second report", func() bool { return len(srv.Accepted()) == 1 })
	if inv := srv.Invalid(); len(inv) > 0 {
		t.Fatalf("invalid requests: %v", inv)
	}
	req := srv.Accepted()[0]
	if req.AccessKey != ssmtest.MockAccessKey || req.Region != ssmtest.MockRegion || req.ResourceId != simInstance || req.ComplianceType != "Custom:patchd" {
		t.Errorf("request: key %s region %s resource %s type %s", req.AccessKey, req.Region, req.ResourceId, req.ComplianceType)
	}
	ids := map[string]string{}
	for _, it := range req.Items {
		ids[it.Id] = it.Status + "/" + it.Severity
	}
	for id, want := range map[string]string{"pre-patch/10-drain": "COMPLIANT/MEDIUM", "post-patch/20-verify": "COMPLIANT/HIGH", "cycle": "COMPLIANT/HIGH", "monitoring-restored": "COMPLIANT/HIGH"} {
		if ids[id] != want {
			t.Errorf("item %s = %q, want %s (all: %v)", id, ids[id], want, ids)
		}
	}
	eventually(t, 30*time.Second, "status to show the delivery", func() bool {
		st, text = e.status()
		return !st.SSMReports[1].LastSuccess.IsZero() && st.SSMReports[1].Reason == "" && st.SSMReports[1].Pending == 0
	})
	if strings.Contains(text, "failed") {
		t.Errorf("status still shows a failure after the delivery:\n%s", text)
	}
}
