//go:build linux

package hooks

import (
	"context"
	"os"
	"path/filepath"
	"runtime"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// TestWithoutPidfd runs the runner's behaviour tests again with
// pidfd_open failing, as on a kernel before 5.3 or under a seccomp filter
// that refuses it: the hook's exit then comes from a goroutine blocked in
// wait(2), through the eventfd.
func TestWithoutPidfd(t *testing.T) {
	orig := pidfdOpen
	pidfdOpen = func(int, int) (int, error) { return -1, unix.ENOSYS }
	t.Cleanup(func() { pidfdOpen = orig })
	for _, tc := range []struct {
		name string
		f    func(*testing.T)
	}{
		{"policy", TestRunPhasePolicy},
		{"environment", TestEnvironmentContract},
		{"timeout", TestTimeoutKillsGroup},
		{"background child", TestBackgroundChildDoesNotHang},
		{"cancel", TestCancelInterruptsPhase},
		{"stop", TestStopLetsHookChooseItsExit},
		{"output cap", TestOutputIsCapped},
		{"start failure", TestStartFailure},
		{"busy past its timeout", TestTimeoutWhileWriting},
		{"no leaks", TestRunLeavesNothingOpen},
	} {
		t.Run(tc.name, tc.f)
	}
}

// TestTimeoutWhileWriting: a hook that writes without pause still times
// out; its output keeps the loop busy but must not keep the deadline off.
func TestTimeoutWhileWriting(t *testing.T) {
	root := newRoot(t)
	writeHook(t, filepath.Join(root, "pre-patch", "10-chatty"), "#!/bin/sh\nwhile :; do echo chatter; done\n", 0o755)
	hs, _ := Discover(root, PrePatch)
	const timeout = 300 * time.Millisecond
	r := NewRunner(Options{Timeout: timeout, KillGrace: time.Second, DrainTimeout: time.Second}, nil)
	start := time.Now()
	res := r.RunHook(context.Background(), hs[0], Env{Phase: PrePatch})
	took := time.Since(start)
	if res.Outcome != TimedOut {
		t.Errorf("outcome %s (%s), want timed_out", res.Outcome, res.Error)
	}
	if took < timeout || took > timeout+2*time.Second+3*time.Second {
		t.Errorf("returned after %s", took)
	}
	if res.StdoutTail == "" {
		t.Error("the output before the kill was lost")
	}
}

// TestRunLeavesNothingOpen: a hundred hook runs of every ending leave no
// descriptor open and no goroutine running.
func TestRunLeavesNothingOpen(t *testing.T) {
	root := newRoot(t)
	writeHook(t, filepath.Join(root, "post-patch", "10-ok"), "#!/bin/sh\necho out; echo err >&2\n", 0o755)
	writeHook(t, filepath.Join(root, "post-patch", "20-fails"), "#!/bin/sh\nexit 3\n", 0o755)
	writeHook(t, filepath.Join(root, "post-patch", "30-bad-interpreter"), "#!/nonexistent/interpreter\n", 0o755)
	writeHook(t, filepath.Join(root, "post-patch", "40-lingers"), "#!/bin/sh\nsleep 2 &\necho left\n", 0o755)
	r := NewRunner(Options{DrainTimeout: 10 * time.Millisecond}, nil)
	run := func() {
		res, err := r.RunPhase(context.Background(), root, Env{Phase: PostPatch}, PhaseOptions{})
		if err != nil || len(res) != 4 {
			t.Fatalf("%v %+v", err, res)
		}
		if res[0].Outcome != Success || res[1].ExitCode != 3 || res[2].Outcome != Failed || res[3].Outcome != Success {
			t.Fatalf("results %+v", res)
		}
	}
	run() // the pool's buffer and the runtime's own descriptors
	fds, goroutines := openFDs(t), runtime.NumGoroutine()
	for range 25 {
		run()
	}
	if now := openFDs(t); now != fds {
		t.Errorf("%d descriptors open after the runs, %d before", now, fds)
	}
	if now := runtime.NumGoroutine(); now > goroutines {
		t.Errorf("%d goroutines after the runs, %d before", now, goroutines)
	}
}

func openFDs(t *testing.T) int {
	t.Helper()
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Fatal(err)
	}
	return len(ents)
}
