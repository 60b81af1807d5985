package agentlog

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/fsnotify/fsnotify"
	"github.com/jonboulle/clockwork"
	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
)

const agentLog = "amazon-ssm-agent.log"

// harness runs one Tailer on a temp log dir and collects its events.
type harness struct {
	t      *testing.T
	dir    string
	state  string
	events chan Event
	reg    *prometheus.Registry
	m      *Metrics
	logs   *syncBuffer
	cancel context.CancelFunc
	done   chan error
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func newHarness(t *testing.T) *harness {
	t.Helper()
	root := t.TempDir()
	dir := filepath.Join(root, "logs")
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	return &harness{t: t, dir: dir, state: filepath.Join(root, StateFile)}
}

func (h *harness) options() Options {
	h.events = make(chan Event, 10000)
	h.reg = prometheus.NewRegistry()
	h.logs = &syncBuffer{}
	h.m = NewMetrics(h.reg, []string{agentLog, "errors.log"})
	return Options{
		Dir: h.dir, Files: []string{agentLog, "errors.log"}, StatePath: h.state,
		RotationGrace: 300 * time.Millisecond, IdleFlush: 30 * time.Millisecond, PersistInterval: 10 * time.Millisecond,
		Sink:    func(e Event) { h.events <- e.Clone() },
		Logger:  slog.New(slog.NewTextHandler(h.logs, &slog.HandlerOptions{Level: slog.LevelDebug})),
		Metrics: h.m,
	}
}

// start runs a Tailer with the real watcher until stop; with changes
// applied to the harness's options.
func (h *harness) start(changes ...func(*Options)) {
	h.t.Helper()
	o := h.options()
	for _, c := range changes {
		c(&o)
	}
	tl, err := New(o)
	if err != nil {
		h.t.Fatal(err)
	}
	started := make(chan struct{})
	tl.started = func() { close(started) }
	h.runWith(tl.Run)
	select {
	case <-started:
	case err := <-h.done:
		h.t.Fatalf("Run returned at start: %v", err)
	}
}

func (h *harness) runWith(run func(context.Context) error) {
	ctx, cancel := context.WithCancel(context.Background())
	h.cancel, h.done = cancel, make(chan error, 1)
	go func() { h.done <- run(ctx) }()
	h.t.Cleanup(h.stop)
}

func (h *harness) stop() {
	if h.cancel == nil {
		return
	}
	h.cancel()
	if err := <-h.done; err != nil {
		h.t.Errorf("Run: %v", err)
	}
	h.cancel = nil
}

// expect waits for exactly these messages, in order, then for quiet.
func (h *harness) expect(msgs ...string) {
	h.t.Helper()
	deadline := time.NewTimer(20 * time.Second)
	defer deadline.Stop()
	for i, want := range msgs {
		select {
		case e := <-h.events:
			if e.Message != want {
				h.t.Fatalf("event %d: got %q, want %q", i, e.Message, want)
			}
		case <-deadline.C:
			h.t.Fatalf("timed out waiting for event %d %q; log:\n%s", i, want, h.logs.String())
		}
	}
	h.quiet()
}

// quiet checks that no further event arrives within a few idle flushes.
func (h *harness) quiet() {
	h.t.Helper()
	q := time.NewTimer(200 * time.Millisecond)
	defer q.Stop()
	select {
	case e := <-h.events:
		h.t.Fatalf("unexpected event %q", e.Message)
	case <-q.C:
	}
}

func line(tag string, n int) string {
	return fmt.Sprintf("2024-10-21 10:00:00.0000 INFO %s %d", tag, n)
}
func msg(tag string, n int) string { return fmt.Sprintf("%s %d", tag, n) }

func appendLines(t *testing.T, f *os.File, tag string, from, to int) []string {
	t.Helper()
	var b strings.Builder
	var msgs []string
	for i := from; i < to; i++ {
		b.WriteString(line(tag, i) + "\n")
		msgs = append(msgs, msg(tag, i))
	}
	if _, err := f.WriteString(b.String()); err != nil {
		t.Fatal(err)
	}
	return msgs
}

func openAppend(t *testing.T, path string) *os.File {
	t.Helper()
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	return f
}

func TestTailStartsAtEndThenResumes(t *testing.T) {
	h := newHarness(t)
	path := filepath.Join(h.dir, agentLog)
	f := openAppend(t, path)
	appendLines(t, f, "history", 0, 50) // there before the first start: not events
	h.start()
	h.quiet()
	h.expect(appendLines(t, f, "a", 0, 5)...)
	h.stop()
	written := appendLines(t, f, "b", 0, 5) // while patchd is down
	h.start()
	h.expect(append(written, appendLines(t, f, "c", 0, 3)...)...)
}

func TestTailRotations(t *testing.T) {
	for _, tc := range []struct {
		name   string
		rotate func(t *testing.T, path string, old *os.File)
		// second writer still on the old file after the rotation
		oldWriter bool
	}{
		{name: "rename", oldWriter: true, rotate: func(t *testing.T, path string, _ *os.File) {
			if err := os.Rename(path, path+".1"); err != nil {
				t.Fatal(err)
			}
		}},
		{name: "delete", oldWriter: true, rotate: func(t *testing.T, path string, _ *os.File) {
			if err := os.Remove(path); err != nil {
				t.Fatal(err)
			}
		}},
		{name: "copytruncate", rotate: func(t *testing.T, path string, old *os.File) {
			data, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(path+".1", data, 0o644); err != nil {
				t.Fatal(err)
			}
			if err := old.Truncate(0); err != nil {
				t.Fatal(err)
			}
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t)
			path := filepath.Join(h.dir, agentLog)
			f := openAppend(t, path)
			h.start()
			h.quiet()
			want := appendLines(t, f, "w1", 0, 10)
			h.expect(want...)
			tc.rotate(t, path, f)
			var got []string
			if tc.oldWriter {
				got = append(got, appendLines(t, f, "w2", 0, 3)...)
			}
			nf := openAppend(t, path)
			if tc.name == "copytruncate" {
				nf = f
			}
			got = append(got, appendLines(t, nf, "w1", 10, 15)...)
			h.expect(got...)
			if n := value(t, h.m.rotations.WithLabelValues(agentLog)); n != 1 {
				t.Errorf("rotations_total = %v, want 1", n)
			}
			h.stop()
		})
	}
}

func TestTailMissingFileAppears(t *testing.T) {
	h := newHarness(t)
	h.start()
	h.quiet()
	f := openAppend(t, filepath.Join(h.dir, "errors.log"))
	h.expect(appendLines(t, f, "e", 0, 4)...)
	if !strings.Contains(h.logs.String(), "waiting for agent log file") {
		t.Errorf("no 'waiting' message logged:\n%s", h.logs.String())
	}
}

func TestTailCorruptState(t *testing.T) {
	h := newHarness(t)
	f := openAppend(t, filepath.Join(h.dir, agentLog))
	appendLines(t, f, "history", 0, 100)
	if err := os.WriteFile(h.state, []byte(`{"version":1,"files":[{"name":"amazon-ssm-agent.log","offset":-5}]}`), 0o600); err != nil {
		t.Fatal(err)
	}
	h.start()
	h.quiet()
	h.expect(appendLines(t, f, "new", 0, 3)...)
	if !strings.Contains(h.logs.String(), h.state) {
		t.Errorf("corrupt state not logged with its path:\n%s", h.logs.String())
	}
}

func TestTailRotatedWhileDown(t *testing.T) {
	for _, tc := range []struct {
		name   string
		rotate func(t *testing.T, path string)
		lost   bool
	}{
		{name: "rename", rotate: func(t *testing.T, path string) {
			if err := os.Rename(path, path+".3"); err != nil {
				t.Fatal(err)
			}
		}},
		{name: "delete", lost: true, rotate: func(t *testing.T, path string) {
			if err := os.Remove(path); err != nil {
				t.Fatal(err)
			}
		}},
		{name: "truncate", lost: true, rotate: func(t *testing.T, path string) {
			if err := os.Truncate(path, 0); err != nil {
				t.Fatal(err)
			}
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t)
			path := filepath.Join(h.dir, agentLog)
			f := openAppend(t, path)
			h.start()
			h.quiet()
			h.expect(appendLines(t, f, "a", 0, 3)...)
			h.stop()
			unread := appendLines(t, f, "b", 0, 3) // written before the rotation, while down
			tc.rotate(t, path)
			nf := openAppend(t, path)
			fresh := appendLines(t, nf, "c", 0, 3)
			h.start()
			if tc.lost {
				h.expect(fresh...)
			} else {
				h.expect(append(unread, fresh...)...)
			}
		})
	}
}

func TestTailLongLine(t *testing.T) {
	h := newHarness(t)
	f := openAppend(t, filepath.Join(h.dir, agentLog))
	h.start()
	h.quiet()
	long := line("x", 0) + strings.Repeat("y", 200<<10)
	if _, err := f.WriteString(long + "\n" + line("z", 1) + "\n"); err != nil {
		t.Fatal(err)
	}
	want := long[len("2024-10-21 10:00:00.0000 INFO "):MaxLine]
	h.expect(want, msg("z", 1))
	if n := value(t, h.m.truncated); n != 1 {
		t.Errorf("truncated_lines_total = %v, want 1", n)
	}
}

// TestTailOverflowRescans drops every inotify event and sends only an
// overflow: the rescan alone must find the rotation and the new lines.
func TestTailOverflowRescans(t *testing.T) {
	h := newHarness(t)
	path := filepath.Join(h.dir, agentLog)
	f := openAppend(t, path)
	o := h.options()
	o.Clock = clockwork.NewFakeClock() // no ticks: only the overflow reads
	tl, err := New(o)
	if err != nil {
		t.Fatal(err)
	}
	events, errs := make(chan fsnotify.Event), make(chan error)
	h.runWith(func(ctx context.Context) error {
		return tl.run(ctx, events, errs, func() error { return nil })
	})
	errs <- errors.New("a watcher error: taken only once the files are open")
	msgs := appendLines(t, f, "a", 0, 3)
	if err := os.Rename(path, path+".1"); err != nil {
		t.Fatal(err)
	}
	nf := openAppend(t, path)
	msgs = append(msgs, appendLines(t, nf, "b", 0, 3)...)
	errs <- fsnotify.ErrEventOverflow
	// The new file's lines end the rotated file's last entry; the new
	// file's last entry stays open for the idle flush, which needs the
	// (fake, never advanced) clock.
	h.expect(msgs[:5]...)
	if !strings.Contains(h.logs.String(), "overflowed") {
		t.Errorf("overflow not logged:\n%s", h.logs.String())
	}
}

// value reads a counter or gauge.
func value(t *testing.T, m prometheus.Metric) float64 {
	t.Helper()
	var d dto.Metric
	if err := m.Write(&d); err != nil {
		t.Fatal(err)
	}
	if d.Counter != nil {
		return d.Counter.GetValue()
	}
	return d.Gauge.GetValue()
}

// TestTailTruncateThenDelete: a copytruncate and a delete+recreate both
// happen before the tailer looks, and a writer keeps writing into the
// deleted file; passes are driven by hand.
func TestTailTruncateThenDelete(t *testing.T) {
	h := newHarness(t)
	path := filepath.Join(h.dir, agentLog)
	f := openAppend(t, path)
	o := h.options()
	o.Clock = clockwork.NewFakeClock()
	tl, err := New(o)
	if err != nil {
		t.Fatal(err)
	}
	events, errs := make(chan fsnotify.Event), make(chan error)
	h.runWith(func(ctx context.Context) error {
		return tl.run(ctx, events, errs, func() error { return nil })
	})
	// The second send is taken only once the first pass has finished.
	pass := func() { errs <- errors.New("pass"); errs <- errors.New("pass") }
	pass()
	a := appendLines(t, f, "a", 0, 10)
	pass()
	if err := f.Truncate(0); err != nil {
		t.Fatal(err)
	}
	b := appendLines(t, f, "b", 0, 3)
	pass()
	if err := os.Remove(path); err != nil {
		t.Fatal(err)
	}
	b = append(b, appendLines(t, f, "b", 3, 6)...)
	g := openAppend(t, path)
	c := appendLines(t, g, "c", 0, 3)
	pass()
	b = append(b, appendLines(t, f, "b", 6, 9)...)
	pass()
	c = append(c, appendLines(t, g, "c", 3, 4)...)
	pass()
	// Each writer's lines in order; how the two interleave is not fixed.
	h.expectPerWriter(append(append(a, b...), c[:3]...))
}

// expectPerWriter waits for exactly these messages ("<writer> <n>") and
// checks that each writer's come out in order.
func (h *harness) expectPerWriter(want []string) {
	h.t.Helper()
	deadline := time.NewTimer(20 * time.Second)
	defer deadline.Stop()
	per := func(msgs []string) map[string][]string {
		m := map[string][]string{}
		for _, s := range msgs {
			w, _, _ := strings.Cut(s, " ")
			m[w] = append(m[w], s)
		}
		return m
	}
	var got []string
	for len(got) < len(want) {
		select {
		case e := <-h.events:
			got = append(got, e.Message)
		case <-deadline.C:
			h.t.Fatalf("timed out after %d of %d events: %q", len(got), len(want), got)
		}
	}
	h.quiet()
	if g, w := fmt.Sprint(per(got)), fmt.Sprint(per(want)); g != w {
		h.t.Fatalf("per writer:\n got %s\nwant %s", g, w)
	}
}

// TestTailMetrics checks the series after a few entries: lines by level
// (continuations as "-"), events by kind, and one version series, the
// version of the last start banner.
func TestTailMetrics(t *testing.T) {
	h := newHarness(t)
	f := openAppend(t, filepath.Join(h.dir, agentLog))
	h.start()
	h.quiet()
	text := "2024-10-21 10:00:00.0000 INFO [amazon-ssm-agent] amazon-ssm-agent - v3.3.1000.0\n" +
		"2024-10-21 10:00:01.0000 ERROR [amazon-ssm-agent] Retrieve credentials produced error: AccessDeniedException\n" +
		"\tstatus code: 400, request id: 1\n" +
		"2024-10-21 10:00:02.0000 INFO [amazon-ssm-agent] Starting Core Agent: amazon-ssm-agent - v3.3.1142.0\n"
	if _, err := f.WriteString(text); err != nil {
		t.Fatal(err)
	}
	h.expect("[amazon-ssm-agent] amazon-ssm-agent - v3.3.1000.0",
		"[amazon-ssm-agent] Retrieve credentials produced error: AccessDeniedException",
		"[amazon-ssm-agent] Starting Core Agent: amazon-ssm-agent - v3.3.1142.0")
	for _, tc := range []struct {
		m    prometheus.Metric
		want float64
	}{
		{h.m.lines.WithLabelValues(agentLog, "INFO"), 2},
		{h.m.lines.WithLabelValues(agentLog, "ERROR"), 1},
		{h.m.lines.WithLabelValues(agentLog, "-"), 1},
		{h.m.lines.WithLabelValues("errors.log", "INFO"), 0},
		{h.m.events.WithLabelValues(string(AgentStart)), 2},
		{h.m.events.WithLabelValues(string(CredentialsError)), 1},
		{h.m.lastEvent.WithLabelValues(string(CredentialsError)), float64(time.Date(2024, 10, 21, 10, 0, 1, 0, time.Local).Unix())},
	} {
		if got := value(t, tc.m); got != tc.want {
			t.Errorf("%s = %v, want %v", tc.m.Desc(), got, tc.want)
		}
	}
	mfs, err := h.reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != "patchd_agent_version_info" {
			continue
		}
		if len(mf.Metric) != 1 || mf.Metric[0].Label[0].GetValue() != "3.3.1142.0" {
			t.Errorf("patchd_agent_version_info = %v, want one series for 3.3.1142.0", mf.Metric)
		}
		return
	}
	t.Error("no patchd_agent_version_info")
}

// TestTailTicksOnlyWhenBusy: the fallback tick exists while an entry waits
// for its idle flush and its offset for the persist, and is gone once both
// are done, so an idle tailer wakes only for inotify events.
func TestTailTicksOnlyWhenBusy(t *testing.T) {
	h := newHarness(t)
	f := openAppend(t, filepath.Join(h.dir, agentLog))
	o := h.options()
	fc := clockwork.NewFakeClock()
	o.Clock = fc
	tl, err := New(o)
	if err != nil {
		t.Fatal(err)
	}
	started := make(chan struct{})
	tl.started = func() { close(started) }
	events, errs := make(chan fsnotify.Event), make(chan error)
	h.runWith(func(ctx context.Context) error {
		return tl.run(ctx, events, errs, func() error { return nil })
	})
	<-started // a new file is read from its end: write only once it is open
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	msgs := appendLines(t, f, "a", 0, 3)
	// The second event is taken only once the first pass and the tick
	// decision after it are done.
	events <- fsnotify.Event{Name: f.Name(), Op: fsnotify.Write}
	events <- fsnotify.Event{Name: f.Name(), Op: fsnotify.Write}
	if err := fc.BlockUntilContext(ctx, 1); err != nil {
		t.Fatalf("no tick while the last entry waits for its idle flush: %v", err)
	}
	h.expectAdvancing(fc, o.IdleFlush, msgs...)
	if err := fc.BlockUntilContext(ctx, 0); err != nil {
		t.Fatalf("the tick still runs with nothing left to do: %v", err)
	}
	// An event after the idle period is read and starts the tick again
	// for the last entry.
	more := appendLines(t, f, "b", 0, 2)
	events <- fsnotify.Event{Name: f.Name(), Op: fsnotify.Write}
	if err := fc.BlockUntilContext(ctx, 1); err != nil {
		t.Fatalf("no tick after new lines: %v", err)
	}
	h.expectAdvancing(fc, o.IdleFlush, more...)
}

// expectAdvancing is expect for a tailer on a fake clock: the tick it
// waits on may have been armed before the lines were read (the read races
// with the test goroutine), so the clock moves on by step until each entry
// has had its idle flush.
func (h *harness) expectAdvancing(fc *clockwork.FakeClock, step time.Duration, msgs ...string) {
	h.t.Helper()
	deadline := time.NewTimer(20 * time.Second)
	defer deadline.Stop()
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	fc.Advance(step)
	for i, want := range msgs {
		for got := false; !got; {
			select {
			case e := <-h.events:
				if e.Message != want {
					h.t.Fatalf("event %d: got %q, want %q", i, e.Message, want)
				}
				got = true
			case <-tick.C:
				fc.Advance(step)
			case <-deadline.C:
				h.t.Fatalf("timed out waiting for event %d %q; log:\n%s", i, want, h.logs.String())
			}
		}
	}
	h.quiet()
}

// TestTailDirRemovedAndBack: the directory's own watch goes with it, so the
// tailer polls until the directory is back and then follows the new file.
func TestTailDirRemovedAndBack(t *testing.T) {
	h := newHarness(t)
	f := openAppend(t, filepath.Join(h.dir, agentLog))
	h.start()
	h.expect(appendLines(t, f, "a", 0, 3)...)
	if err := os.RemoveAll(h.dir); err != nil {
		t.Fatal(err)
	}
	// Only once the old file is drained: until then its drain keeps a
	// tick going anyway.
	poll := time.NewTicker(10 * time.Millisecond)
	defer poll.Stop()
	deadline := time.After(20 * time.Second)
	for !strings.Contains(h.logs.String(), "finished draining") {
		select {
		case <-poll.C:
		case <-deadline:
			t.Fatalf("the removed file was not drained; log:\n%s", h.logs.String())
		}
	}
	if err := os.Mkdir(h.dir, 0o755); err != nil {
		t.Fatal(err)
	}
	g := openAppend(t, filepath.Join(h.dir, agentLog))
	h.expect(appendLines(t, g, "b", 0, 3)...)
}

// TestTailerChunksAlone: the Tailer skips the search of each line for the
// markers searched alone ("Bye.") in a chunk that has none; a line with one,
// inside a chunk or across the boundary of two at each of its bytes, is
// classified as a Classifier that searches every line classifies it.
func TestTailerChunksAlone(t *testing.T) {
	dir := t.TempDir()
	var b bytes.Buffer
	chunk := 256 << 10
	// With ids, which are parts of the message: an entry left open at the
	// end of a chunk keeps them when the chunk is read over.
	filler := "2024-10-21 10:00:00.0000 INFO [ssm-agent-worker] command: aws.ssm.c-%d.i-1 complete\n"
	for split := 0; split <= len("Bye."); split++ {
		// Up to the next boundary, then a line whose "Bye." has split
		// bytes before it.
		line := "2024-10-21 10:00:01.0000 INFO [amazon-ssm-agent] Bye.\n"
		cut := strings.Index(line, "Bye.") + split
		boundary := (b.Len()/chunk + 1) * chunk
		for b.Len() < boundary-cut-200 {
			fmt.Fprintf(&b, filler, b.Len())
		}
		b.WriteString(strings.Repeat("x", boundary-cut-b.Len()-1) + "\n")
		b.WriteString(line)
	}
	// And one in a chunk, away from its ends (the chunks above have no
	// "Bye." but across their boundaries).
	for range 100 {
		fmt.Fprintf(&b, filler, b.Len())
	}
	b.WriteString("2024-10-21 10:00:02.0000 INFO Bye. inside a chunk\n")
	fmt.Fprintf(&b, filler, 0)
	if err := os.WriteFile(filepath.Join(dir, agentLog), b.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	var got []string
	tl, err := New(Options{Dir: dir, Files: []string{agentLog}, StatePath: filepath.Join(dir, StateFile),
		Sink: func(e Event) {
			got = append(got, fmt.Sprintf("%d %s %s %s", e.Pos.Offset, e.Kind, e.Message, e.CommandID))
		}})
	if err != nil {
		t.Fatal(err)
	}
	if len(tl.buf) != chunk {
		t.Fatalf("the Tailer reads %d bytes at a time; the test puts its lines for %d", len(tl.buf), chunk)
	}
	s, err := tl.open(agentLog, filepath.Join(dir, agentLog), 0)
	if err != nil {
		t.Fatal(err)
	}
	s.read(tl, -1)
	s.close(tl)
	var want []string
	c := Classifier{Emit: func(e Entry) {
		if !e.Tail {
			want = append(want, fmt.Sprintf("%d %s %s %s", e.End, e.Kind, e.Message, e.CommandID))
		}
	}}
	sp := splitter{line: func(l []byte, start, end int64, _ bool) { c.Feed(l, start, end) }}
	sp.push(b.Bytes(), 0)
	c.Flush()
	stops := 0
	for _, w := range want {
		if strings.Contains(w, string(AgentStop)) {
			stops++
		}
	}
	if stops != len("Bye.")+2 {
		t.Fatalf("%d stops in the log, want %d", stops, len("Bye.")+2)
	}
	if !slices.Equal(got, want) {
		t.Errorf("the Tailer handed out %d entries, a Classifier alone %d; they differ", len(got), len(want))
		for i := range min(len(got), len(want)) {
			if got[i] != want[i] {
				t.Fatalf("first difference: %q, want %q", got[i], want[i])
			}
		}
	}
}
