package agentlog

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/patchd/patchd/agent/testbin"
)

// tailBin is internal/tailcmd: one Tailer in a process the torture test can
// SIGKILL and the ingest benchmark can measure. Built once in TestMain.
var tailBin string

func TestMain(m *testing.M) {
	testbin.Main(m, testbin.Build{Name: "tailcmd", Pkg: "./internal/tailcmd", Out: &tailBin})
}

// tortureWriter appends numbered lines to the log at full speed through its
// own descriptor, and re-opens the path lazily (like each agent process's
// seelog writer): at once when told (the rotating writer), or when a stat
// every checkEvery lines shows the path is another file (the other writer,
// which keeps writing into the rotated file until then).
type tortureWriter struct {
	tag        string
	path       string
	checkEvery int
	last       atomic.Int64 // last seq written
	reopenAt   atomic.Int64 // first seq written through the current descriptor
	openID     atomic.Pointer[os.FileInfo]
	reopen     atomic.Bool
	err        error
}

// burst lines are written back to back every millisecond: full speed within
// a burst, and a rate the tailer's line-per-write output can follow.
const burst = 25

func (w *tortureWriter) run(stop <-chan struct{}) {
	var f *os.File
	defer func() {
		if f != nil {
			f.Close()
		}
	}()
	open := func(seq int64) bool {
		if f != nil {
			f.Close()
		}
		var err error
		f, err = os.OpenFile(w.path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o644)
		if err == nil {
			var fi os.FileInfo
			if fi, err = f.Stat(); err == nil {
				w.reopenAt.Store(seq)
				w.openID.Store(&fi)
				return true
			}
		}
		w.err = err
		return false
	}
	buf := make([]byte, 0, 64)
	tick := time.NewTicker(time.Millisecond)
	defer tick.Stop()
	for seq := int64(1); ; seq++ {
		if seq%burst == 0 {
			select {
			case <-stop:
				return
			case <-tick.C:
			}
		}
		if f == nil || w.reopen.Swap(false) || (seq%int64(w.checkEvery) == 0 && w.moved(f)) {
			if !open(seq) {
				return
			}
		}
		buf = append(buf[:0], "2024-10-21 10:00:00.0000 INFO "...)
		buf = append(buf, w.tag...)
		buf = append(buf, ' ')
		buf = strconv.AppendInt(buf, seq, 10)
		buf = append(buf, '\n')
		if _, err := f.Write(buf); err != nil {
			w.err = err
			return
		}
		w.last.Store(seq)
	}
}

// moved reports whether the path no longer names f's file.
func (w *tortureWriter) moved(f *os.File) bool {
	a, err := os.Stat(w.path)
	if err != nil {
		return true
	}
	b, err := f.Stat()
	if err != nil {
		return true
	}
	return !os.SameFile(a, b)
}

// tailProc is one run of tailcmd and what it printed on stdout (progress
// only: the output checked is the journal).
type tailProc struct {
	cmd        *exec.Cmd
	mu         sync.Mutex
	lines      map[string][]int64 // per writer, in output order
	bad        []string
	readerDone chan struct{}
	stderr     syncBuffer
}

type tortureRun struct {
	t     *testing.T
	dir   string
	state string
	out   string // tailcmd's journal (-out), shared by every run
	// pastMark counts the journal records found past the offsets' mark at
	// the restarts: entries a SIGKILL left uncommitted in the offsets.
	pastMark int
	procs    []*tailProc
	maxSeen  sync.Map // writer tag -> *atomic.Int64
	diag     func() string
}

func (r *tortureRun) seen(tag string) *atomic.Int64 {
	v, _ := r.maxSeen.LoadOrStore(tag, new(atomic.Int64))
	return v.(*atomic.Int64)
}

// start runs a tailer. What counts as seen restarts from the journal: a
// killed tailer may have recorded a line there without printing it.
func (r *tortureRun) start() *tailProc {
	r.t.Helper()
	committed, past := r.journal()
	r.pastMark += past
	r.maxSeen.Range(func(k, _ any) bool { r.maxSeen.Delete(k); return true })
	for tag, seqs := range committed {
		if len(seqs) > 0 {
			r.seen(tag).Store(seqs[len(seqs)-1])
		}
	}
	cmd := exec.Command(tailBin, "-dir", r.dir, "-state", r.state, "-out", r.out, "-grace", "3s", "-persist", "100ms", "-idle", "50ms")
	p := &tailProc{cmd: cmd, lines: map[string][]int64{}, readerDone: make(chan struct{})}
	cmd.Stderr = &p.stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		r.t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		r.t.Fatal(err)
	}
	go func() {
		defer close(p.readerDone)
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			tag, num, ok := strings.Cut(sc.Text(), " ")
			seq, err := strconv.ParseInt(num, 10, 64)
			if !ok || err != nil {
				p.mu.Lock()
				p.bad = append(p.bad, sc.Text())
				p.mu.Unlock()
				continue
			}
			p.mu.Lock()
			p.lines[tag] = append(p.lines[tag], seq)
			p.mu.Unlock()
			if m := r.seen(tag); seq > m.Load() {
				m.Store(seq)
			}
		}
	}()
	r.procs = append(r.procs, p)
	return p
}

// journal parses tailcmd's journal into each writer's seqs in order, and
// returns how many records it holds past the mark in the offsets file: the
// ones a restart moves the offsets over. A last line without its newline
// (a write torn by the SIGKILL) is not counted: the restart cuts it off.
func (r *tortureRun) journal() (map[string][]int64, int) {
	r.t.Helper()
	data, err := os.ReadFile(r.out)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, 0
	}
	if err != nil {
		r.t.Fatal(err)
	}
	st, err := os.ReadFile(r.state)
	if err != nil {
		r.t.Fatal(err)
	}
	var mark struct{ Mark *int64 }
	if err := json.Unmarshal(st, &mark); err != nil || mark.Mark == nil {
		r.t.Fatalf("offsets file without a journal mark (%v): %s", err, st)
	}
	if *mark.Mark > int64(len(data)) {
		r.t.Fatalf("the journal holds %d bytes, less than its mark %d", len(data), *mark.Mark)
	}
	if i := bytes.LastIndexByte(data, '\n'); i+1 < len(data) {
		data = data[:i+1]
	}
	seqs, past := map[string][]int64{}, 0
	at := 0
	for _, l := range strings.SplitAfter(string(data), "\n") {
		if l == "" {
			continue
		}
		if int64(at) >= *mark.Mark {
			past++
		}
		at += len(l)
		_, msg, _ := strings.Cut(strings.TrimSuffix(l, "\n"), " ")
		tag, num, ok := strings.Cut(msg, " ")
		seq, err := strconv.ParseInt(num, 10, 64)
		if !ok || err != nil {
			r.t.Fatalf("journal line %q is no writer's", l)
		}
		seqs[tag] = append(seqs[tag], seq)
	}
	return seqs, past
}

func (r *tortureRun) stop(p *tailProc, sig syscall.Signal) {
	r.t.Helper()
	_ = p.cmd.Process.Signal(sig)
	<-p.readerDone
	err := p.cmd.Wait()
	if sig == syscall.SIGTERM && err != nil {
		r.t.Fatalf("tailcmd after SIGTERM: %v\n%s", err, p.stderr.String())
	}
}

// waitSeen waits until the tailer has printed seq (or later) of writer tag.
func (r *tortureRun) waitSeen(tag string, seq int64, what string) {
	r.t.Helper()
	r.waitFor(fmt.Sprintf("tailer to print %s %d (%s)", tag, seq, what), func() bool { return r.seen(tag).Load() >= seq })
}

// waitFor polls cond on a ticker with a hard deadline: the tailer is
// another process, so there is no event to wait on.
func (r *tortureRun) waitFor(what string, cond func() bool) {
	r.t.Helper()
	deadline := time.NewTimer(60 * time.Second)
	defer deadline.Stop()
	tick := time.NewTicker(time.Millisecond)
	defer tick.Stop()
	for !cond() {
		select {
		case <-deadline.C:
			var logs strings.Builder
			if n := len(r.procs); n > 0 {
				p := r.procs[n-1]
				// A goroutine dump of the stuck tailer, then its log.
				_ = p.cmd.Process.Signal(syscall.SIGQUIT)
				<-p.readerDone
				_ = p.cmd.Wait()
				logs.WriteString(p.stderr.String())
			}
			if r.diag != nil {
				logs.WriteString(r.diag())
			}
			r.t.Fatalf("timed out waiting for %s; tailer log:\n%s", what, logs.String())
		case <-tick.C:
		}
	}
}

// TestRotationTorture: two writers append at full speed while rotations
// cycle through rename (seelog style: the rotating writer re-creates at
// once, the other keeps writing into the renamed file until it notices),
// copytruncate and delete+recreate; the tailer process is stopped now and
// then, by SIGKILL or SIGTERM, and restarted. The tailer records what it
// hands out in a journal (Options.Journal), which is the output checked:
// every line exactly once and in order per writer, across the SIGKILLs
// too; a line missing only if written inside a copytruncate's
// copy-to-truncate window.
// PATCHD_AGENTLOG_TORTURE=long (make bench-agentlog) runs 1000 rotations.
func TestRotationTorture(t *testing.T) {
	rotations := 120
	if os.Getenv("PATCHD_AGENTLOG_TORTURE") == "long" {
		rotations = 1000
	}
	root := t.TempDir()
	r := &tortureRun{t: t, dir: filepath.Join(root, "logs"), state: filepath.Join(root, StateFile), out: filepath.Join(root, "journal")}
	if err := os.Mkdir(r.dir, 0o755); err != nil {
		t.Fatal(err)
	}
	// "The file did not exist": the first run reads it from its start.
	if err := os.WriteFile(r.state, []byte(`{"version":1,"files":[{"name":"amazon-ssm-agent.log","dev":0,"inode":0,"offset":0,"fingerprint_len":0,"fingerprint":""}]}`), 0o600); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(r.dir, "amazon-ssm-agent.log")
	w1 := &tortureWriter{tag: "w1", path: path, checkEvery: 1 << 30}
	w2 := &tortureWriter{tag: "w2", path: path, checkEvery: 300}
	writers := []*tortureWriter{w1, w2}
	r.diag = func() string {
		var b strings.Builder
		for _, w := range writers {
			if id := w.openID.Load(); id != nil {
				_, ino := fileID(*id)
				fmt.Fprintf(&b, "%s writes inode %d, last %d, reopened at %d\n", w.tag, ino, w.last.Load(), w.reopenAt.Load())
			}
		}
		ents, _ := os.ReadDir(r.dir)
		for _, e := range ents {
			if fi, err := e.Info(); err == nil {
				_, ino := fileID(fi)
				fmt.Fprintf(&b, "%s inode %d size %d\n", e.Name(), ino, fi.Size())
			}
		}
		st, _ := os.ReadFile(r.state)
		b.Write(st)
		return b.String()
	}

	proc := r.start()
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for _, w := range writers {
		wg.Add(1)
		go func() { defer wg.Done(); w.run(stop) }()
	}
	stopWriters := func() {
		select {
		case <-stop:
		default:
			close(stop)
		}
		wg.Wait()
	}
	defer stopWriters()

	// caughtUp waits until the tailer has printed a line each writer wrote
	// through its current descriptor: the tailer then has the current file
	// open, and has read everything of the writer's older files (it reads
	// older files before newer ones).
	caughtUp := func(what string) {
		for _, w := range writers {
			r.waitFor(what+": "+w.tag+" writing", func() bool {
				if w.err != nil {
					t.Fatalf("writer %s: %v", w.tag, w.err)
				}
				cur, err := os.Stat(path)
				if id := w.openID.Load(); err != nil || id == nil || !os.SameFile(cur, *id) {
					return false // still on a file rotated away
				}
				at := w.reopenAt.Load()
				return at > 0 && w.last.Load() >= at
			})
			r.waitSeen(w.tag, w.reopenAt.Load(), what)
		}
	}

	type window struct{ from, to int64 } // seqs (from, to] may be lost
	windows := map[string][]window{}
	renamed, kills, terms := 0, 0, 0
	var history []string // what happened at which seqs, for a failure message
	note := func(what string) {
		var ino uint64
		if fi, err := os.Stat(path); err == nil {
			_, ino = fileID(fi)
		}
		history = append(history, fmt.Sprintf("%s at w1=%d w2=%d inode %d", what, w1.last.Load(), w2.last.Load(), ino))
	}
	var counts [3]int
	for i := 0; i < rotations; i++ {
		caughtUp(fmt.Sprintf("before rotation %d", i))
		kind := i % 3
		counts[kind]++
		note(fmt.Sprintf("rotation %d kind %d", i, kind))
		switch kind {
		case 0: // rename, keeping five like seelog
			renamed++
			if err := os.Rename(path, fmt.Sprintf("%s.%d", path, renamed)); err != nil {
				t.Fatal(err)
			}
			w1.reopen.Store(true)
			if renamed > 5 {
				os.Remove(fmt.Sprintf("%s.%d", path, renamed-5))
			}
		case 1: // copytruncate
			// The window opens here. Lines written before it must all come
			// out, so the copy waits until the tailer has read them: what
			// copytruncate loses is then what it alone loses, not what a
			// tailer behind the writers would lose with it.
			from := map[string]int64{}
			for _, w := range writers {
				from[w.tag] = w.last.Load()
			}
			for _, w := range writers {
				r.waitSeen(w.tag, from[w.tag], "before a copytruncate")
			}
			data, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(path+".ct", data, 0o644); err != nil {
				t.Fatal(err)
			}
			if err := os.Truncate(path, 0); err != nil {
				t.Fatal(err)
			}
			for _, w := range writers {
				// +1: a write may have landed before the truncate while
				// its writer had not yet recorded it as written.
				windows[w.tag] = append(windows[w.tag], window{from[w.tag], w.last.Load() + 1})
			}
		case 2: // delete and recreate
			if err := os.Remove(path); err != nil {
				t.Fatal(err)
			}
			w1.reopen.Store(true)
		}
		// Stop the tailer a few times, right after a rename so that the
		// other writer is still writing into the renamed file.
		if kind == 0 && i > 0 && i%(rotations/10) < 3 {
			sig := syscall.SIGKILL
			if (kills+terms)%3 == 2 {
				sig = syscall.SIGTERM
			}
			note(fmt.Sprintf("stop %v", sig))
			r.stop(proc, sig)
			if sig == syscall.SIGKILL {
				kills++
			} else {
				terms++
			}
			proc = r.start()
		}
	}
	// Let the writers reach the file after the last rotation, so that
	// their last lines are outside any copytruncate window.
	caughtUp("after the last rotation")
	stopWriters()
	for _, w := range writers {
		if w.err != nil {
			t.Fatalf("writer %s: %v", w.tag, w.err)
		}
		r.waitSeen(w.tag, w.last.Load(), "after the writers stopped")
	}
	r.stop(proc, syscall.SIGTERM)
	if kills < 2 || terms < 1 {
		t.Fatalf("only %d SIGKILLs and %d SIGTERMs", kills, terms)
	}

	// Check the journal per writer: every line once, in order, and a line
	// missing only if written inside a copytruncate window.
	out, past := r.journal()
	if past != 0 {
		t.Fatalf("after a clean stop %d journal records are past the offsets' mark", past)
	}
	printed := 0 // lines on the tailers' stdout, replays after SIGKILL included
	for pi, p := range r.procs {
		if len(p.bad) > 0 {
			t.Fatalf("process %d printed lines that are no writer's: %q", pi, p.bad[:min(3, len(p.bad))])
		}
		for _, ls := range p.lines {
			printed += len(ls)
		}
	}
	totalMissing, totalWindow, journaled, written := 0, 0, 0, int64(0)
	for _, w := range writers {
		last := w.last.Load()
		written += last
		seen := make([]bool, last+1)
		var prev int64
		for k, seq := range out[w.tag] {
			if seq < 1 || seq > last {
				t.Fatalf("%s: journal has %d, only 1..%d written", w.tag, seq, last)
			}
			if seq <= prev {
				for pi, p := range r.procs {
					t.Logf("process %d log:\n%s", pi, p.stderr.String())
				}
				t.Fatalf("%s: journal has %d after %d (out of order or twice); around it: %v\n%s",
					w.tag, seq, prev, out[w.tag][max(0, k-5):min(len(out[w.tag]), k+5)], strings.Join(history, "\n"))
			}
			seen[seq], prev = true, seq
			journaled++
		}
		for seq := int64(1); seq <= last; seq++ {
			if seen[seq] {
				continue
			}
			inWindow := false
			for _, win := range windows[w.tag] {
				if seq > win.from && seq <= win.to {
					inWindow = true
					break
				}
			}
			if !inWindow {
				for pi, p := range r.procs {
					t.Logf("process %d log:\n%s", pi, p.stderr.String())
				}
				ls := out[w.tag]
				for k, v := range ls {
					if v > seq {
						t.Logf("journal around it: %v", ls[max(0, k-5):min(len(ls), k+5)])
						break
					}
				}
				t.Fatalf("%s: line %d never in the journal and not written inside a copytruncate window\n%s", w.tag, seq, strings.Join(history, "\n"))
			}
			totalMissing++
		}
		for _, win := range windows[w.tag] {
			totalWindow += int(win.to - win.from)
		}
	}
	// Entries a killed tailer recorded after its last write of the
	// offsets, which the restart must not hand out again: without any, the
	// kills tested nothing. The stdout copy is printed after the record,
	// so it can only be short of the journal.
	if r.pastMark == 0 {
		t.Fatalf("%d SIGKILLs but the journal never held a record past the offsets' mark at a restart: the kills missed the stream", kills)
	}
	if printed > journaled {
		t.Fatalf("%d lines printed but %d in the journal: some were handed out twice", printed, journaled)
	}
	t.Logf("%d rotations (%d rename, %d copytruncate, %d delete), %d SIGKILL and %d SIGTERM restarts, %d lines written; "+
		"%d lines missing of %d written inside copy-to-truncate windows; %d entries recorded past the offsets at a SIGKILL, none handed out again",
		rotations, counts[0], counts[1], counts[2], kills, terms, written, totalMissing, totalWindow, r.pastMark)
}
