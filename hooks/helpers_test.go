package hooks

import (
	"context"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
)

// copyTree copies a testdata tree into a fresh temp dir with explicit
// modes (0755, or 0644 for files git keeps without an execute bit), so the
// result does not depend on the checkout's umask.
func copyTree(t *testing.T, src string) string {
	t.Helper()
	dst := filepath.Join(t.TempDir(), "hooks.d")
	err := filepath.WalkDir(src, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(src, p)
		out := filepath.Join(dst, rel)
		if d.IsDir() {
			if err := os.MkdirAll(out, 0o755); err != nil {
				return err
			}
			return os.Chmod(out, 0o755)
		}
		fi, err := d.Info()
		if err != nil {
			return err
		}
		data, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		mode := fs.FileMode(0o644)
		if fi.Mode()&0o111 != 0 {
			mode = 0o755
		}
		if err := os.WriteFile(out, data, mode); err != nil {
			return err
		}
		return os.Chmod(out, mode)
	})
	if err != nil {
		t.Fatal(err)
	}
	return dst
}

// newRoot makes an empty hooks root with the three phase directories.
func newRoot(t *testing.T) string {
	t.Helper()
	root := filepath.Join(t.TempDir(), "hooks.d")
	for _, p := range Phases {
		if err := os.MkdirAll(filepath.Join(root, string(p)), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	return root
}

// writeHook writes a script with an exact mode.
func writeHook(t *testing.T, path, body string, mode fs.FileMode) {
	t.Helper()
	if err := os.WriteFile(path, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(path, mode); err != nil {
		t.Fatal(err)
	}
}

// logRecorder is a slog handler that keeps every record's message and
// attributes, for asserting what was logged.
type logRecorder struct {
	mu      sync.Mutex
	records []map[string]string
	attrs   []slog.Attr
}

func (l *logRecorder) Enabled(context.Context, slog.Level) bool { return true }
func (l *logRecorder) Handle(_ context.Context, r slog.Record) error {
	m := map[string]string{"msg": r.Message, "level": r.Level.String()}
	for _, a := range l.attrs {
		m[a.Key] = a.Value.String()
	}
	r.Attrs(func(a slog.Attr) bool {
		m[a.Key] = a.Value.String()
		return true
	})
	l.mu.Lock()
	l.records = append(l.records, m)
	l.mu.Unlock()
	return nil
}
func (l *logRecorder) WithAttrs(as []slog.Attr) slog.Handler {
	l.mu.Lock()
	defer l.mu.Unlock()
	return &logShared{l, append(append([]slog.Attr{}, l.attrs...), as...)}
}
func (l *logRecorder) WithGroup(string) slog.Handler { return l }

// logShared is a logRecorder view with extra attributes that records into
// the same list.
type logShared struct {
	root  *logRecorder
	attrs []slog.Attr
}

func (s *logShared) Enabled(context.Context, slog.Level) bool { return true }
func (s *logShared) Handle(ctx context.Context, r slog.Record) error {
	r2 := r.Clone()
	r2.AddAttrs(s.attrs...)
	return s.root.Handle(ctx, r2)
}
func (s *logShared) WithAttrs(as []slog.Attr) slog.Handler {
	return &logShared{s.root, append(append([]slog.Attr{}, s.attrs...), as...)}
}
func (s *logShared) WithGroup(string) slog.Handler { return s }

// lines returns the logged output lines of one stream.
func (l *logRecorder) lines(stream string) []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	var out []string
	for _, r := range l.records {
		if r["msg"] == "hook output" && r["stream"] == stream {
			out = append(out, r["line"])
		}
	}
	return out
}

func (l *logRecorder) has(msg string) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, r := range l.records {
		if strings.Contains(r["msg"], msg) {
			return true
		}
	}
	return false
}

func mkdirMode(dir string) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	return os.Chmod(dir, 0o755)
}

func writeMode(path, body string) error {
	if err := os.WriteFile(path, []byte(body), 0o755); err != nil {
		return err
	}
	return os.Chmod(path, 0o755)
}

// recorder is a Recorder that keeps what it is told, for the tests; the
// Prometheus one is tested in hookmetrics.
type recorder struct {
	mu      sync.Mutex
	runs    map[Phase]map[Outcome]int
	phases  map[Phase][]bool // each PhaseRun's ok, in order
	refused map[Phase]int
}

func newRecorder() *recorder {
	return &recorder{runs: map[Phase]map[Outcome]int{}, phases: map[Phase][]bool{}, refused: map[Phase]int{}}
}

func (r *recorder) HookRun(res Result) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.runs[res.Phase] == nil {
		r.runs[res.Phase] = map[Outcome]int{}
	}
	r.runs[res.Phase][res.Outcome]++
}

func (r *recorder) PhaseRun(p Phase, ok bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.phases[p] = append(r.phases[p], ok)
}

func (r *recorder) Refused(p Phase, n int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.refused[p] = n
}

// count is the number of runs of phase told with outcome o.
func (r *recorder) count(p Phase, o Outcome) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.runs[p][o]
}

// total is the number of runs of phase told, whatever their outcome.
func (r *recorder) total(p Phase) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	n := 0
	for _, c := range r.runs[p] {
		n += c
	}
	return n
}

func (r *recorder) refusedIn(p Phase) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.refused[p]
}

func (r *recorder) phaseRuns(p Phase) []bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.phases[p])
}
