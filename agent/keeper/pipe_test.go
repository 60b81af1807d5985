package keeper

import (
	"context"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// killFromPIDFile ends the background process a test command recorded.
func killFromPIDFile(t *testing.T, path string) {
	t.Cleanup(func() {
		b, err := os.ReadFile(path)
		if err != nil {
			return
		}
		if pid, err := strconv.Atoi(strings.TrimSpace(string(b))); err == nil {
			_ = syscall.Kill(pid, syscall.SIGKILL)
		}
	})
}

// restartWithin runs m.Restart and fails the test if it has not returned
// within d (the background child lives 30s: far longer).
func restartWithin(t *testing.T, ctx context.Context, m Manager, d time.Duration) error {
	t.Helper()
	done := make(chan error, 1)
	go func() { done <- m.Restart(ctx) }()
	select {
	case err := <-done:
		return err
	case <-time.After(d):
		t.Fatal("Restart blocked on a child holding the command's output")
		return nil
	}
}

// A restart command that exits at once but leaves a child holding its
// output neither blocks the keeper nor counts as a success.
func TestRestartCommandLeavingChildHoldingOutput(t *testing.T) {
	pidFile := filepath.Join(t.TempDir(), "child.pid")
	killFromPIDFile(t, pidFile)
	m, err := Detect(context.Background(), DetectOptions{Service: "command",
		RestartCommand: "sleep 30 & echo $! > " + pidFile + "; exit 0"})
	if err != nil {
		t.Fatal(err)
	}
	err = restartWithin(t, context.Background(), m, 15*time.Second)
	if err == nil || !strings.Contains(err.Error(), "still holds its output") {
		t.Fatalf("Restart = %v, want a failure saying a child holds the output", err)
	}
	if active, _ := m.Active(context.Background()); active {
		t.Fatal("Active after such a restart = true")
	}
}

// A restart command that does not end is stopped at the deadline
// (agent.restart_check_timeout), even when a child holds its output.
func TestRestartCommandDeadlineIsHonoured(t *testing.T) {
	pidFile := filepath.Join(t.TempDir(), "child.pid")
	killFromPIDFile(t, pidFile)
	m, err := Detect(context.Background(), DetectOptions{Service: "command",
		RestartCommand: "sleep 30 & echo $! > " + pidFile + "; wait"})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	err = restartWithin(t, ctx, m, 15*time.Second)
	if err == nil || !strings.Contains(err.Error(), "did not finish in time") {
		t.Fatalf("Restart = %v, want a deadline failure", err)
	}
}

// A restart command that prints without end is kept to its first bytes.
func TestRestartCommandOutputIsBounded(t *testing.T) {
	m, err := Detect(context.Background(), DetectOptions{Service: "command",
		RestartCommand: "head -c 20000000 /dev/zero | tr '\\0' x; exit 3"})
	if err != nil {
		t.Fatal(err)
	}
	err = restartWithin(t, context.Background(), m, 60*time.Second)
	if err == nil || !strings.Contains(err.Error(), "more bytes of output dropped") {
		t.Fatalf("Restart = %.200v, want a failure with the output cut", err)
	}
	if n := len(err.Error()); n > 2*maxToolOutput {
		t.Fatalf("the error holds %d bytes of output", n)
	}
}
