package atomicfile

import (
	"bytes"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestFailedWritesAreCounted(t *testing.T) {
	// A regular file where the directory should be: the write fails, as in
	// a read-only or full state directory, also for root.
	blocker := filepath.Join(t.TempDir(), "state")
	if err := os.WriteFile(blocker, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	before := Failures()
	if err := WriteFile(filepath.Join(blocker, "x.json"), []byte("{}"), 0o600); err == nil {
		t.Fatal("write under a file succeeded")
	}
	if err := WriteJSON(filepath.Join(blocker, "y.json"), 1, 0o600); err == nil {
		t.Fatal("write under a file succeeded")
	}
	if got := Failures() - before; got != 2 {
		t.Errorf("Failures grew by %d, want 2", got)
	}
	if err := WriteFile(filepath.Join(t.TempDir(), "ok"), nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if got := Failures() - before; got != 2 {
		t.Errorf("a successful write was counted: %d", got)
	}
}

func TestErrorLogIsRateLimited(t *testing.T) {
	var buf bytes.Buffer
	log := slog.New(slog.NewTextHandler(&buf, &slog.HandlerOptions{AddSource: true}))
	l := ErrorLog{Every: time.Minute}
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	// Four failures a second for five minutes.
	for i := range 4 * 300 {
		l.Failed(log, t0.Add(time.Duration(i)*250*time.Millisecond), "cannot save", "path", "/s")
	}
	lines := strings.Split(strings.TrimSpace(buf.String()), "\n")
	if len(lines) != 5 {
		t.Fatalf("%d lines for 1,200 failures over 5 minutes, want 5:\n%s", len(lines), buf.String())
	}
	if !strings.Contains(lines[0], "failures_test.go") {
		t.Errorf("the line's source is not the caller: %s", lines[0])
	}
	if !strings.Contains(lines[1], "failures_since_last_line=240") {
		t.Errorf("the second line does not count the failures left out: %s", lines[1])
	}
	buf.Reset()
	l.OK(log, "saved again")
	l.OK(log, "saved again")
	if n := strings.Count(buf.String(), "saved again"); n != 1 {
		t.Errorf("recovery logged %d times, want once", n)
	}
	buf.Reset()
	l.Failed(log, t0.Add(time.Hour), "cannot save")
	if !strings.Contains(buf.String(), "cannot save") {
		t.Errorf("a new failure after a recovery is not logged at once")
	}
}
