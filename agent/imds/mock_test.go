package imds

// Tests against amazon-ec2-metadata-mock (pinned in go.mod as a tool), a
// real IMDSv2: token PUT with TTL, 401 for requests without a valid token,
// and a config file it reloads while running (-w). Its config format is
// pkg/config/defaults/aemm-metadata-default-values.json in
// github.com/aws/amazon-ec2-metadata-mock v1.13.0: metadata.values keys
// "iam-info" and "iam-security-credentials-role"; the credentials path
// follows the role name.

import (
	"context"
	"encoding/json"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/jonboulle/clockwork"

	"github.com/patchd/patchd/agent/testbin"
)

var mockBin string

func TestMain(m *testing.M) {
	testbin.Main(m, testbin.Build{Name: "ec2-metadata-mock", Pkg: "github.com/aws/amazon-ec2-metadata-mock/cmd/ec2-metadata-mock", Out: &mockBin})
}

type mockIMDS struct {
	t      *testing.T
	dir    string
	config string
	port   string
	cmd    *exec.Cmd
}

func writeMockConfig(t *testing.T, path string, id Identity) {
	t.Helper()
	cfg := map[string]any{"metadata": map[string]any{"values": map[string]any{
		"iam-info": map[string]string{
			"Code": "Success", "LastUpdated": time.Now().UTC().Format(time.RFC3339),
			"InstanceProfileArn": id.InstanceProfileArn, "InstanceProfileId": id.InstanceProfileID,
		},
		"iam-security-credentials-role": id.Role,
	}}}
	data, err := json.Marshal(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, data, 0o644); err != nil {
		t.Fatal(err)
	}
}

func startMock(t *testing.T, id Identity) *mockIMDS {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	_, port, _ := net.SplitHostPort(l.Addr().String())
	l.Close()
	m := &mockIMDS{t: t, dir: t.TempDir(), port: port}
	m.config = filepath.Join(m.dir, "aemm-config.json")
	writeMockConfig(t, m.config, id)
	m.start()
	t.Cleanup(m.stop)
	return m
}

func (m *mockIMDS) endpoint() string { return "http://127.0.0.1:" + m.port }

func (m *mockIMDS) start() {
	m.t.Helper()
	logf, err := os.OpenFile(filepath.Join(m.dir, "mock.log"), os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o644)
	if err != nil {
		m.t.Fatal(err)
	}
	defer logf.Close()
	m.cmd = exec.Command(mockBin, "-n", "127.0.0.1", "-p", m.port, "-I", "-c", m.config, "-w")
	m.cmd.Dir = m.dir
	m.cmd.Env = append(os.Environ(), "HOME="+m.dir)
	m.cmd.Stdout, m.cmd.Stderr = logf, logf
	if err := m.cmd.Start(); err != nil {
		m.t.Fatal(err)
	}
	poll(m.t, 30*time.Second, "the mock to listen on "+m.port, func() bool {
		c, err := net.DialTimeout("tcp", "127.0.0.1:"+m.port, time.Second)
		if err == nil {
			c.Close()
		}
		return err == nil
	})
}

func (m *mockIMDS) stop() {
	if m.cmd == nil || m.cmd.Process == nil {
		return
	}
	_ = m.cmd.Process.Kill()
	_ = m.cmd.Wait()
	m.cmd = nil
}

func (m *mockIMDS) log() string {
	b, _ := os.ReadFile(filepath.Join(m.dir, "mock.log"))
	return string(b)
}

// poll waits for an external process on a ticker with a hard deadline.
func poll(t *testing.T, within time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.NewTimer(within)
	defer deadline.Stop()
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for !cond() {
		select {
		case <-deadline.C:
			t.Fatalf("timed out after %s waiting for %s", within, what)
		case <-tick.C:
		}
	}
}

func mockWatcher(t *testing.T, endpoint string) *testWatcher {
	tw := newTestWatcher(t, endpoint, t.TempDir(), clockwork.NewFakeClock())
	// The mock is a separate process on a loaded machine: allow it time.
	tw.SetConfig(endpoint, time.Minute, 5*time.Second)
	return tw
}

// The real token flow, then a profile ARN change picked up by the running
// mock from its config file: exactly one change.
func TestMockProfileChangeWhileRunning(t *testing.T) {
	m := startMock(t, profA)
	tw := mockWatcher(t, m.endpoint())
	ctx := context.Background()
	o := tw.Poll(ctx)
	if !o.Known || o.Identity != profA || !o.ServesCredentials || o.Changed {
		t.Fatalf("first poll = %+v (err %v), want profile a serving credentials\nmock log:\n%s", o, o.Err, m.log())
	}
	newProfile := Identity{"arn:aws:iam::123456789012:instance-profile/a-replaced", "AIPAREPLACEDREPLACED1", profA.Role}
	writeMockConfig(t, m.config, newProfile)
	var changed []Observation
	poll(t, 30*time.Second, "the mock to serve the new profile", func() bool {
		// While the mock swaps its handlers its paths answer 404 for a
		// moment: unknown (or "no profile"), and never a change.
		o := tw.Poll(ctx)
		if o.Changed {
			changed = append(changed, o)
		}
		return o.Identity == newProfile
	})
	for range 3 {
		if o := tw.Poll(ctx); o.Changed || !o.Known {
			t.Fatalf("poll after the change = %+v, want known and no further change", o)
		}
	}
	if len(changed) != 1 || changed[0].Previous != profA || !strings.Contains(changed[0].Reason, "instance profile changed") {
		t.Fatalf("changes = %+v, want exactly one, from profile a", changed)
	}
}

// A role rename needs a restart of the mock; the restarted mock does not
// know the token patchd holds, so the SDK must fetch a new one on the 401.
func TestMockRoleRenameAcrossRestart(t *testing.T) {
	m := startMock(t, profA)
	tw := mockWatcher(t, m.endpoint())
	ctx := context.Background()
	if o := tw.Poll(ctx); !o.Known || o.Identity != profA {
		t.Fatalf("first poll = %+v (err %v)\nmock log:\n%s", o, o.Err, m.log())
	}
	m.stop()
	renamed := Identity{profA.InstanceProfileArn, profA.InstanceProfileID, "role-a-renamed"}
	writeMockConfig(t, m.config, renamed)
	m.start()
	o := tw.Poll(ctx)
	if !o.Known {
		t.Fatalf("first poll after the mock restarted failed (token not refreshed?): %v\nmock log:\n%s", o.Err, m.log())
	}
	if !o.Changed || o.Identity != renamed || !o.ServesCredentials || !strings.Contains(o.Reason, "role changed from role-a to role-a-renamed") {
		t.Fatalf("poll after restart = %+v, want the role rename", o)
	}
	if !strings.Contains(m.log(), "GenerateToken") {
		t.Errorf("mock log shows no token request")
	}
}
