package cycle

import (
	"bytes"
	"context"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/jonboulle/clockwork"

	"github.com/patchd/patchd/hooks"
)

// startGroup starts a shell in its own process group, as the hooks runner
// starts a hook; it reads stdin until it is closed.
func startGroup(t *testing.T, script string) (*exec.Cmd, func()) {
	t.Helper()
	cmd := exec.Command("/bin/sh", "-c", script)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	in, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	waited := make(chan struct{})
	go func() { _ = cmd.Wait(); close(waited) }()
	t.Cleanup(func() {
		_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
		<-waited
	})
	return cmd, func() { in.Close(); <-waited }
}

func TestHookProcessIdentity(t *testing.T) {
	cmd, end := startGroup(t, "read x")
	p := processOf(cmd.Process.Pid, "boot-1")
	if p.Start == 0 {
		t.Fatalf("no start time read for pid %d", p.Pgid)
	}
	if !alive(p, "boot-1") {
		t.Fatalf("a running group is not alive")
	}
	reused := *p
	reused.Start++
	if alive(&reused, "boot-1") {
		t.Errorf("a pid with another start time is taken for the hook")
	}
	if alive(p, "boot-2") {
		t.Errorf("a group from before a reboot is alive")
	}
	end()
	if alive(p, "boot-1") {
		t.Errorf("an ended group is alive")
	}
}

// syncLog collects log lines for a test to wait on.
type syncLog struct {
	mu   sync.Mutex
	buf  bytes.Buffer
	seen chan struct{}
	want string
}

func (l *syncLog) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.buf.Write(p)
	if l.seen != nil && strings.Contains(l.buf.String(), l.want) {
		close(l.seen)
		l.seen = nil
	}
	return len(p), nil
}

func engineForProcess(t *testing.T, clock clockwork.Clock, w *syncLog) *Engine {
	e, err := New(Options{StateDir: t.TempDir(), Runner: &fakeRunner{}, Clock: clock,
		Logger:   slog.New(slog.NewTextHandler(w, nil)),
		Settings: func() Settings { return Settings{} }, BootID: func() string { return "boot-1" }})
	if err != nil {
		t.Fatal(err)
	}
	return e
}

// The orphaned run is waited for while it is within its timeout: the
// hook is not started again until the group is gone.
func TestAwaitEarlierRunWaitsForTheGroup(t *testing.T) {
	cmd, end := startGroup(t, "read x")
	clock := clockwork.NewFakeClock()
	w := &syncLog{seen: make(chan struct{}), want: "waiting for it to end"}
	seen := w.seen
	e := engineForProcess(t, clock, w)
	hs := &HookState{Process: processOf(cmd.Process.Pid, "boot-1")}
	hs.Phase, hs.Name, hs.Start = "post-patch", "10-x", clock.Now()
	done := make(chan bool, 1)
	go func() { done <- e.awaitEarlierRun(context.Background(), hs, hooks.PostPatch) }()
	<-seen
	select {
	case <-done:
		t.Fatal("returned while the earlier run was still going")
	default:
	}
	end()
	if !<-done {
		t.Error("awaitEarlierRun = false without a stop")
	}
}

// Past the hook's timeout the group is killed, as the killed patchd would
// have killed it.
func TestAwaitEarlierRunKillsPastTheTimeout(t *testing.T) {
	cmd, _ := startGroup(t, "sleep 300 & wait")
	clock := clockwork.NewFakeClock()
	e := engineForProcess(t, clock, &syncLog{})
	hs := &HookState{Process: processOf(cmd.Process.Pid, "boot-1")}
	hs.Phase, hs.Name, hs.Start = "post-patch", "10-x", clock.Now().Add(-hooks.DefaultTimeout)
	if !e.awaitEarlierRun(context.Background(), hs, hooks.PostPatch) {
		t.Fatal("awaitEarlierRun = false")
	}
	if alive(hs.Process, "boot-1") {
		t.Error("the group is still alive")
	}
	// A stop while waiting returns false at once.
	cmd2, _ := startGroup(t, "read x")
	hs2 := &HookState{Process: processOf(cmd2.Process.Pid, "boot-1")}
	hs2.Start = clock.Now().Add(time.Hour)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if e.awaitEarlierRun(ctx, hs2, hooks.PostPatch) {
		t.Error("awaitEarlierRun = true after a stop")
	}
}

// A hook run whose process group was not recorded (patchd killed between
// the start and that record) is found by its environment, its file and its
// start time.
func TestOrphanFoundWithoutItsRecord(t *testing.T) {
	dir := t.TempDir()
	script := filepath.Join(dir, "10-hook")
	if err := os.WriteFile(script, []byte("#!/bin/sh\nread x\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	since := time.Now()
	cmd := exec.Command(script)
	cmd.Env = []string{"PATCHD_CYCLE_ID=c1", "PATCHD_PHASE=post-patch", "PATCHD_ATTEMPT=2"}
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	in, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { in.Close(); _ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL); _ = cmd.Wait() })
	p := findStartedRun("c1", "post-patch", 2, script, since, "boot-1")
	if p == nil || p.Pgid != cmd.Process.Pid || !alive(p, "boot-1") {
		t.Fatalf("findStartedRun = %+v, want pgid %d", p, cmd.Process.Pid)
	}
	for name, q := range map[string]*HookProcess{
		"another attempt": findStartedRun("c1", "post-patch", 1, script, since, "boot-1"),
		"another cycle":   findStartedRun("c2", "post-patch", 2, script, since, "boot-1"),
		"another hook":    findStartedRun("c1", "post-patch", 2, script+"x", since, "boot-1"),
		"started before":  findStartedRun("c1", "post-patch", 2, script, since.Add(time.Hour), "boot-1"),
	} {
		if q != nil {
			t.Errorf("%s: found pgid %d", name, q.Pgid)
		}
	}
}
