package systemtest

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"
)

// imdsMock is the pinned amazon-ec2-metadata-mock serving IMDSv2 on the
// host's loopback, which the container shares. A role change restarts it on
// the same port with the new configuration: its config-file watcher (-w)
// reloads values but keeps serving the credentials under the old role's
// path, and patchd reads both (pkg/cmd/root/root.go setupAndSaveConfig in
// github.com/aws/amazon-ec2-metadata-mock v1.13.0).
type imdsMock struct {
	URL  string
	bin  string
	dir  string
	port string
	cmd  *exec.Cmd
	logf *os.File
}

const imdsConfig = `{"metadata": {
 "paths": {"iam-security-credentials": "/latest/meta-data/iam/security-credentials/%[1]s"},
 "values": {
  "iam-security-credentials-role": "%[1]s",
  "iam-info": {"Code": "Success", "LastUpdated": "2026-11-22T00:00:00Z",
    "InstanceProfileArn": "arn:aws:iam::123456789012:instance-profile/%[1]s",
    "InstanceProfileId": "AIPA%[1]s"}}}}
`

func startIMDS(t *testing.T, role string) *imdsMock {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "go", "tool", "-n", "ec2-metadata-mock")
	cmd.Dir = suite.repo
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("go tool -n ec2-metadata-mock: %v", err)
	}
	m := &imdsMock{bin: strings.TrimSpace(string(out)), dir: t.TempDir()}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	m.port = strconv.Itoa(l.Addr().(*net.TCPAddr).Port)
	l.Close()
	m.URL = "http://127.0.0.1:" + m.port
	if m.logf, err = os.Create(filepath.Join(m.dir, "mock.log")); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		m.stop()
		m.logf.Close()
	})
	m.start(t, role)
	return m
}

func (m *imdsMock) start(t *testing.T, role string) {
	t.Helper()
	conf := filepath.Join(m.dir, "aemm-"+role+".json")
	if err := os.WriteFile(conf, fmt.Appendf(nil, imdsConfig, role), 0o644); err != nil {
		t.Fatal(err)
	}
	m.cmd = exec.Command(m.bin, "-c", conf, "--imdsv2", "-n", "127.0.0.1", "-p", m.port)
	m.cmd.Dir = m.dir
	m.cmd.Env = append(os.Environ(), "HOME="+m.dir)
	m.cmd.Stdout, m.cmd.Stderr = m.logf, m.logf
	if err := m.cmd.Start(); err != nil {
		t.Fatalf("starting %s: %v", m.bin, err)
	}
	m.waitRole(t, role)
}

func (m *imdsMock) stop() {
	if m.cmd != nil {
		_ = m.cmd.Process.Kill()
		_ = m.cmd.Wait()
		m.cmd = nil
	}
}

// get does one IMDSv2 read (token, then the path).
func (m *imdsMock) get(path string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodPut, m.URL+"/latest/api/token", nil)
	req.Header.Set("X-aws-ec2-metadata-token-ttl-seconds", "60")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return "", err
	}
	token, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	req, _ = http.NewRequestWithContext(ctx, http.MethodGet, m.URL+path, nil)
	req.Header.Set("X-aws-ec2-metadata-token", string(token))
	resp, err = http.DefaultClient.Do(req)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	return string(body), err
}

// setRole changes the instance's role and profile and waits until the mock
// serves them.
func (m *imdsMock) setRole(t *testing.T, role string) {
	t.Helper()
	m.stop()
	m.start(t, role)
}

func (m *imdsMock) waitRole(t *testing.T, role string) {
	t.Helper()
	err := poll(30*time.Second, func() (bool, error) {
		got, err := m.get("/latest/meta-data/iam/security-credentials/")
		if err != nil || strings.TrimSpace(got) != role {
			return false, nil
		}
		creds, err := m.get("/latest/meta-data/iam/security-credentials/" + role)
		return err == nil && strings.Contains(creds, "AccessKeyId"), nil
	})
	if err != nil {
		t.Fatalf("IMDS mock at %s does not serve role %s: %v", m.URL, role, err)
	}
}

// metric returns the sum of the samples of name (all label sets), or -1
// when it has none.
func metric(body, name string) float64 {
	re := regexp.MustCompile(`(?m)^` + regexp.QuoteMeta(name) + `(\{[^}]*\})? (\S+)$`)
	sum, found := 0.0, false
	for _, m := range re.FindAllStringSubmatch(body, -1) {
		if v, err := strconv.ParseFloat(m[2], 64); err == nil {
			sum, found = sum+v, true
		}
	}
	if !found {
		return -1
	}
	return sum
}

// Scenario 2: the instance's role changes at IMDS; patchd restarts the
// agent's unit within a poll interval (its InvocationID changes). With a
// document running (a state file in current/) the restart waits until the
// document is done.
func TestAgentRestartOnRoleChange(t *testing.T) {
	const interval = 3 * time.Second
	// Poll jitter, the restart itself and a loaded machine: generous, and
	// the measured delay is logged.
	const limit = 2*interval + time.Minute
	m := startIMDS(t, "role-a")
	h := newHost(t, "patchd-e2e-keeper", fmt.Sprintf("imds:\n  endpoint: %s\n  poll_interval: %s\n", m.URL, interval))
	body := scrape(t, defaultMetrics)
	if metric(body, "patchd_agent_restarts_total") < 0 && !strings.Contains(body, "patchd_agent_restarts_total") {
		notYet(t, "the packaged patchd has no agent keeper (patchd_agent_restarts_total)")
	}
	h.waitFor(limit, "patchd_role_info for role-a", func() bool {
		return strings.Contains(scrape(t, defaultMetrics), `role="role-a"`)
	})

	unit := "amazon-ssm-agent.service"
	inv := h.prop(unit, "InvocationID")
	m.setRole(t, "role-b")
	start := time.Now()
	h.waitFor(limit, "agent restart after the role change", func() bool { return h.prop(unit, "InvocationID") != inv })
	t.Logf("agent restarted %s after the role change (poll interval %s)", time.Since(start).Round(100*time.Millisecond), interval)
	waitActive(t, h.container, unit)

	// A document is running: the restart must wait for it.
	id := h.sim("submit", "--template", "run-shell-script")
	h.sim("start", id)
	inv = h.prop(unit, "InvocationID")
	deferredBefore := metric(scrape(t, defaultMetrics), "patchd_agent_restarts_deferred_total")
	m.setRole(t, "role-c")
	h.waitFor(limit, "the restart deferred while "+id+" is in current/", func() bool {
		return metric(scrape(t, defaultMetrics), "patchd_agent_restarts_deferred_total") > deferredBefore
	})
	if now := h.prop(unit, "InvocationID"); now != inv {
		t.Fatalf("agent restarted (InvocationID %s -> %s) while document %s was in current/", inv, now, id)
	}
	h.sim("finish", id)
	start = time.Now()
	h.waitFor(limit, "the deferred restart after "+id+" left current/", func() bool { return h.prop(unit, "InvocationID") != inv })
	t.Logf("deferred restart done %s after the document left current/", time.Since(start).Round(100*time.Millisecond))
	if n := metric(scrape(t, defaultMetrics), "patchd_agent_restarts_total"); n < 2 {
		t.Errorf("patchd_agent_restarts_total = %v after two role changes, want >= 2", n)
	}
}
