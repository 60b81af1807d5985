package main

// Shared by every end-to-end test in this package: TestMain builds the real
// patchd binary once; tests start it with --path.* pointed at temp trees.
// Add helpers here rather than a second TestMain.

import (
	"bytes"
	"context"
	"errors"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/patchd/patchd/agent/testbin"
)

// patchdBin is the binary under test, built by TestMain.
var patchdBin string

func TestMain(m *testing.M) {
	// No test may reach AWS: the compliance report (ssm.report: auto) of
	// every patchd a test starts goes to a closed loopback port unless the
	// test points it elsewhere, and no shared AWS files are read.
	for k, v := range map[string]string{"AWS_ENDPOINT_URL_SSM": "http://127.0.0.1:9", "AWS_CONFIG_FILE": os.DevNull,
		"AWS_SHARED_CREDENTIALS_FILE": os.DevNull, "AWS_ACCESS_KEY_ID": "", "AWS_SECRET_ACCESS_KEY": "", "AWS_PROFILE": ""} {
		os.Setenv(k, v)
	}
	testbin.Main(m, testbin.Build{Name: "patchd", Pkg: ".", Flags: []string{"-race"}, Out: &patchdBin},
		testbin.Build{Name: "ec2-metadata-mock", Pkg: "github.com/aws/amazon-ec2-metadata-mock/cmd/ec2-metadata-mock", Out: &imdsMockBin})
}

// testIMDSConfig points IMDS at a closed loopback port: no test may reach
// the real metadata address. A test that writes its own config file starts
// it with this; one that needs IMDS passes --imds.endpoint.
const testIMDSConfig = "imds:\n  endpoint: http://127.0.0.1:9\n"

// testTree is a temp host layout for one patchd.
type testTree struct {
	Root, Config, Hooks, State, AgentData, AgentLogs, Socket string
}

func newTestTree(t *testing.T) testTree {
	t.Helper()
	root := t.TempDir()
	// Unix socket paths are limited to ~108 bytes; t.TempDir() can be long.
	sockDir, err := os.MkdirTemp("", "pd")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(sockDir) })
	tr := testTree{
		Root:      root,
		Config:    filepath.Join(root, "patchd.yaml"),
		Hooks:     filepath.Join(root, "hooks.d"),
		State:     filepath.Join(root, "state"),
		AgentData: filepath.Join(root, "ssm-data"),
		AgentLogs: filepath.Join(root, "ssm-logs"),
		Socket:    filepath.Join(sockDir, "patchd.sock"),
	}
	for _, p := range []string{"pre-patch", "pre-reboot", "post-patch"} {
		if err := os.MkdirAll(filepath.Join(tr.Hooks, p), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	// The hooks tree must not be group/world-writable (t.TempDir is 0700).
	if err := os.WriteFile(tr.Config, []byte(testIMDSConfig), 0o644); err != nil {
		t.Fatal(err)
	}
	return tr
}

// flags returns the --path.* flags (and config file) for the tree.
func (tr testTree) flags() []string {
	return []string{
		"--config.file=" + tr.Config,
		"--path.hooks=" + tr.Hooks,
		"--path.state=" + tr.State,
		"--path.agent-data=" + tr.AgentData,
		"--path.agent-logs=" + tr.AgentLogs,
		"--control.socket=" + tr.Socket,
	}
}

// runPatchd runs a patchd subcommand to completion and returns its exit code,
// stdout and stderr.
func runPatchd(t *testing.T, args ...string) (int, string, string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, patchdBin, args...)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	code := 0
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatalf("patchd %s: %v", strings.Join(args, " "), err)
	}
	return code, out.String(), errb.String()
}

// freePort returns a loopback address with a port that was free a moment ago.
func freePort(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	return addr
}

// eventually polls cond on a ticker until it holds or the deadline passes.
// For external processes only; in-process code waits on events instead.
func eventually(t *testing.T, within time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.NewTimer(within)
	defer deadline.Stop()
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for !cond() {
		select {
		case <-deadline.C:
			t.Fatalf("timed out after %s waiting for %s", within, what)
		case <-tick.C:
		}
	}
}

// daemonProc is a `patchd run` started by a test.
type daemonProc struct {
	cmd    *exec.Cmd
	stderr *syncBuffer
	done   chan error
}

// syncBuffer is a goroutine-safe bytes.Buffer for a child's output.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// startDaemon starts `patchd run` on the tree with extra flags and waits until
// it logs "patchd started". It is stopped (SIGKILL if still running) at cleanup.
func startDaemon(t *testing.T, tr testTree, extra ...string) *daemonProc {
	t.Helper()
	args := append([]string{"run"}, tr.flags()...)
	args = append(args, extra...)
	cmd := exec.Command(patchdBin, args...)
	p := &daemonProc{cmd: cmd, stderr: &syncBuffer{}, done: make(chan error, 1)}
	cmd.Stdout = p.stderr
	cmd.Stderr = p.stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { p.done <- cmd.Wait() }()
	t.Cleanup(func() {
		select {
		case <-p.done:
		default:
			_ = cmd.Process.Kill()
			<-p.done
		}
		if t.Failed() {
			t.Logf("patchd output:\n%s", p.stderr.String())
		}
	})
	eventually(t, 30*time.Second, "patchd to start", func() bool {
		select {
		case err := <-p.done:
			p.done <- err
			t.Fatalf("patchd exited at start: %v\n%s", err, p.stderr.String())
		default:
		}
		return strings.Contains(p.stderr.String(), "patchd started")
	})
	// "patchd started" means every part is launched, not that each listens
	// yet: the control socket (bound in a private directory, then moved
	// into place) may come a moment later, and so may the metrics
	// listener; wait for both, as a client that retries would.
	eventually(t, 30*time.Second, "control socket "+tr.Socket, func() bool {
		c, err := net.DialTimeout("unix", tr.Socket, time.Second)
		if err == nil {
			c.Close()
		}
		return err == nil
	})
	for _, a := range extra {
		if addr, ok := strings.CutPrefix(a, "--web.listen-address="); ok && addr != "" {
			eventually(t, 30*time.Second, "metrics listener on "+addr, func() bool {
				c, err := net.DialTimeout("tcp", addr, time.Second)
				if err == nil {
					c.Close()
				}
				return err == nil
			})
		}
	}
	return p
}

// stop sends sig and waits for the exit, returning how long it took and the
// exit error.
func (p *daemonProc) stop(t *testing.T, sig os.Signal, within time.Duration) (time.Duration, error) {
	t.Helper()
	start := time.Now()
	// A patchd that ended on its own just now (a crash, a kill point) is
	// not an error here: its exit is what the caller gets.
	if err := p.cmd.Process.Signal(sig); err != nil && !errors.Is(err, os.ErrProcessDone) {
		t.Fatal(err)
	}
	select {
	case err := <-p.done:
		p.done <- err
		return time.Since(start), err
	case <-time.After(within):
		t.Fatalf("patchd still running %s after %v\n%s", within, sig, p.stderr.String())
		return 0, nil
	}
}
