package hooks

import (
	"context"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// WithStarted hands out the hook's process group id while it runs: the id
// is the hook's own pid, and its group.
func TestWithStartedReportsTheProcessGroup(t *testing.T) {
	root := newRoot(t)
	writeHook(t, filepath.Join(root, "post-patch", "10-pid"), "#!/bin/sh\necho $$ $(cut -d' ' -f5 /proc/$$/stat)\n", 0o755)
	hs, _ := Discover(root, PostPatch)
	r := NewRunner(Options{PhaseTimeouts: map[Phase]time.Duration{PostPatch: 42 * time.Second}}, nil)
	got := 0
	ctx := WithStarted(context.Background(), func(pgid int) { got = pgid })
	res := r.RunHook(ctx, hs[0], Env{})
	f := strings.Fields(res.StdoutTail)
	if res.Outcome != Success || len(f) != 2 {
		t.Fatalf("hook: %+v", res)
	}
	if strconv.Itoa(got) != f[0] || f[1] != f[0] {
		t.Errorf("WithStarted got %d; the hook's pid and pgid are %s and %s", got, f[0], f[1])
	}
	if d := r.HookTimeout(PostPatch); d != 42*time.Second {
		t.Errorf("HookTimeout(post-patch) = %s", d)
	}
	if d := r.HookTimeout(PrePatch); d != DefaultTimeout {
		t.Errorf("HookTimeout(pre-patch) = %s", d)
	}
}
