package hooks

import (
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// waitList waits, scan by scan, until cond holds for the watcher's list of
// phase; the deadline only bounds a failure.
func waitList(t *testing.T, w *Watcher, phase Phase, what string, cond func([]Hook) bool) {
	t.Helper()
	deadline := time.NewTimer(20 * time.Second)
	defer deadline.Stop()
	for {
		ch := w.Changed()
		if cond(w.List(phase)) {
			return
		}
		select {
		case <-ch:
		case <-deadline.C:
			t.Fatalf("list of %s never showed %s; it is %+v", phase, what, w.List(phase))
		}
	}
}

func state(hs []Hook, name string) State {
	for _, h := range hs {
		if h.Name == name {
			return h.State
		}
	}
	return ""
}

// TestWatcherLiveReload: adding, chmod-ing and removing hooks, and creating
// a phase directory after start, all show in List without a restart, and
// patchd_hooks_refused follows.
func TestWatcherLiveReload(t *testing.T) {
	root := filepath.Join(t.TempDir(), "hooks.d")
	if err := os.MkdirAll(filepath.Join(root, "pre-patch"), 0o755); err != nil {
		t.Fatal(err)
	}
	rec := newRecorder()
	w := NewWatcher(root, nil, rec)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	watching := w.Changed()
	go func() { done <- w.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
	})
	<-watching
	refused := rec.refusedIn

	hook := filepath.Join(root, "pre-patch", "10-drain")
	steps := []struct {
		what  string
		do    func() error
		phase Phase
		name  string
		want  State
	}{
		{"add", func() error { return os.WriteFile(hook, []byte(okScript), 0o755) }, PrePatch, "10-drain", Runnable},
		{"chmod o+w refuses", func() error { return os.Chmod(hook, 0o757) }, PrePatch, "10-drain", Refused},
		{"chmod back", func() error { return os.Chmod(hook, 0o755) }, PrePatch, "10-drain", Runnable},
		{"chmod -x skips", func() error { return os.Chmod(hook, 0o644) }, PrePatch, "10-drain", Skipped},
		{"remove", func() error { return os.Remove(hook) }, PrePatch, "10-drain", ""},
		{"new phase directory and hook", func() error {
			d := filepath.Join(root, "post-patch")
			if err := os.Mkdir(d, 0o755); err != nil {
				return err
			}
			return os.WriteFile(filepath.Join(d, "10-undrain"), []byte(okScript), 0o700)
		}, PostPatch, "10-undrain", Runnable},
		{"group-writable in new dir", func() error {
			return os.Chmod(filepath.Join(root, "post-patch", "10-undrain"), 0o770)
		}, PostPatch, "10-undrain", Refused},
	}
	for _, s := range steps {
		if err := s.do(); err != nil {
			t.Fatalf("%s: %v", s.what, err)
		}
		waitList(t, w, s.phase, s.what, func(hs []Hook) bool { return state(hs, s.name) == s.want })
		wantRefused := 0
		if s.want == Refused {
			wantRefused = 1
		}
		if got := refused(s.phase); got != wantRefused {
			t.Errorf("%s: patchd_hooks_refused{phase=%q} = %v, want %v", s.what, s.phase, got, wantRefused)
		}
	}
}
