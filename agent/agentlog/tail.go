package agentlog

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"math"
	"os"
	"path/filepath"
	"time"

	"github.com/fsnotify/fsnotify"
	"github.com/jonboulle/clockwork"

	"github.com/patchd/patchd/agent/atomicfile"
	"github.com/patchd/patchd/agent/safeopen"
)

// Options configure a Tailer.
type Options struct {
	// Dir is the agent's log directory; it is watched, not the files, so
	// that renames, deletions and re-creations are all seen.
	Dir string
	// Files are the names followed inside Dir.
	Files []string
	// StatePath is the offsets file (<state>/agentlog-offsets.json).
	StatePath string
	// RotationGrace is how long a renamed or deleted file is still read:
	// the agent's other processes keep writing to it until they notice.
	RotationGrace time.Duration
	// Sink gets every classified entry, from the Tailer's goroutine, in
	// order per file. It must not block for long. The event's Message and
	// ids are valid only during the call (see Event): a Sink that keeps the
	// event keeps its Clone.
	Sink func(Event)
	// Logger and Metrics may be nil.
	Logger  *slog.Logger
	Metrics *Metrics
	// Clock defaults to the real clock.
	Clock clockwork.Clock
	// PersistInterval bounds how often the offsets file is written while
	// lines flow (it is always written at stop). Default 1s.
	PersistInterval time.Duration
	// IdleFlush is how long an entry may wait for a continuation line
	// before it is handed out anyway. Default 500ms.
	IdleFlush time.Duration
	// Journal, when set, is the consumer's durable record of the entries
	// it got (an output file, a ledger). With it, delivery is exactly once
	// even across a crash; see Journal.
	Journal Journal
}

// Journal is a consumer that records the entries it is handed, each with
// its Event.Pos, in order. No tailer can hand an entry to a plain consumer
// exactly once across a SIGKILL: whether the offsets are written just
// before or just after the hand-out, a kill in between loses or repeats it.
// A journal closes that gap because its record is the commit: the offsets
// file carries the journal's mark, and a restart advances each file's
// offset over the entries the journal holds past that mark. Nothing is
// handed out twice, and nothing recorded is lost, not even the lines of a
// rotated file that was deleted before the restart could read it again.
type Journal interface {
	// Mark makes what the journal holds durable (fsync: the offsets
	// written next must not describe records a power loss could take) and
	// returns its position. It is called on the Tailer's goroutine,
	// between hand-outs. An error skips that write of the offsets; the
	// next one tries again.
	Mark() (int64, error)
	// Recover returns the Pos of every entry recorded after mark, a value
	// Mark returned, in the order recorded, and cuts off a record torn by
	// a crash (its entry is handed out again). It is called once, before
	// any entry is handed out, when the offsets file holds a mark. An
	// error stops Run: the journal is then not the record the offsets go
	// with, and going on would lose or repeat entries without saying so.
	Recover(mark int64) ([]Position, error)
}

// Tailer follows the agent's log files and hands classified entries to the
// sink. Delivery is exactly once across clean stops and restarts: offsets
// are persisted at the end of the last entry handed out. After a crash
// (SIGKILL, power loss) it is exactly once for a consumer with a Journal;
// to any other consumer the entries handed out since the last persist, at
// most PersistInterval's worth, are handed out again. Nothing is skipped.
type Tailer struct {
	o   Options
	log *slog.Logger
	clk clockwork.Clock

	follow      []*follower
	dirty       bool
	lastPersist time.Time
	persistErr  atomicfile.ErrorLog // rate-limits the log of failed persists
	watching    bool
	dirMissing  bool
	// dirDev and dirIno are the directory's when its watch was added.
	dirDev, dirIno uint64
	buf            []byte
	// started, when set (tests), is called once the files are open.
	started func()
}

// follower is one configured name: its current file and the rotated ones
// still drained, oldest first.
type follower struct {
	name    string
	cur     *source
	old     []*source
	waiting bool // "waiting for file" was logged
}

// source is one open file being read.
type source struct {
	name     string // configured name
	path     string // path at open, for messages
	f        *os.File
	dev, ino uint64
	off      int64 // bytes consumed into the splitter
	fp       []byte
	split    splitter
	cls      Classifier
	until    time.Time // drain deadline, zero for the current file
	lines    *lineCounters
	lastData time.Time
	limit    int64 // read up to here in this pass (-1: to EOF)
	// chunkAt is the offset of the chunk being pushed (MaxInt64 between
	// pushes), and clean says that it has no marker searched alone: its
	// lines that begin in it need no search of their own for one, and the
	// Classifier may keep views of them until the push ends.
	chunkAt int64
	clean   bool
}

// New checks opts and returns a Tailer; Run does the work.
func New(o Options) (*Tailer, error) {
	if o.Dir == "" || len(o.Files) == 0 || o.StatePath == "" || o.Sink == nil {
		return nil, errors.New("agentlog: Dir, Files, StatePath and Sink are required")
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.Clock == nil {
		o.Clock = clockwork.NewRealClock()
	}
	if o.PersistInterval <= 0 {
		o.PersistInterval = time.Second
	}
	if o.IdleFlush <= 0 {
		o.IdleFlush = 500 * time.Millisecond
	}
	if o.RotationGrace < 0 {
		o.RotationGrace = 0
	}
	t := &Tailer{o: o, log: o.Logger, clk: o.Clock, buf: make([]byte, 256<<10)}
	for _, n := range o.Files {
		t.follow = append(t.follow, &follower{name: n})
	}
	return t, nil
}

// Run follows the files until ctx is done, then persists the offsets.
func (t *Tailer) Run(ctx context.Context) error {
	w, err := fsnotify.NewWatcher()
	if err != nil {
		return fmt.Errorf("agent log watcher: %w (raise fs.inotify.max_user_instances)", err)
	}
	defer w.Close()
	return t.run(ctx, w.Events, w.Errors, func() error { return w.Add(t.o.Dir) })
}

// run is Run with the event source injected, so tests can drop events and
// send an overflow.
func (t *Tailer) run(ctx context.Context, events <-chan fsnotify.Event, errs <-chan error, watch func() error) error {
	t.addWatch(watch)
	if err := t.restore(); err != nil {
		t.stop()
		return err
	}
	t.pass()
	t.o.Metrics.publish()
	t.maybePersist(true)
	if t.started != nil {
		t.started()
	}
	// The tick catches what events cannot tell: an entry waiting for its
	// idle flush, the end of a rotated file's drain, offsets waiting to
	// be persisted, a directory not watchable yet. It runs only while one
	// of those is there: an idle tailer sleeps on inotify alone.
	var (
		tick  clockwork.Ticker
		tickC <-chan time.Time
	)
	defer func() {
		if tick != nil {
			tick.Stop()
		}
	}()
	defer t.stop()
	for {
		if t.busy() {
			if tick == nil {
				tick = t.clk.NewTicker(t.o.IdleFlush / 2)
				tickC = tick.Chan()
			}
		} else if tick != nil {
			tick.Stop()
			tick, tickC = nil, nil
		}
		select {
		case <-ctx.Done():
			return nil
		case ev, ok := <-events:
			if !ok {
				return errors.New("agent log watcher closed")
			}
			// Many writes make many events; one pass reads them all.
			t.dirEvent(ev)
			t.drain(events)
			t.pass()
		case err, ok := <-errs:
			if !ok {
				return errors.New("agent log watcher closed")
			}
			if errors.Is(err, fsnotify.ErrEventOverflow) {
				t.log.Warn("agent log events overflowed; rescanning the directory", "dir", t.o.Dir)
			} else {
				t.log.Warn("agent log watcher error; rescanning the directory", "dir", t.o.Dir, "err", err)
			}
			t.pass()
		case <-tickC:
			t.checkDir()
			if !t.watching {
				t.addWatch(watch)
			}
			t.pass()
			t.idleFlush()
		}
		t.o.Metrics.publish()
		t.maybePersist(false)
	}
}

// busy reports whether the tick is needed: something will change without an
// inotify event to tell.
func (t *Tailer) busy() bool {
	if !t.watching || t.dirty {
		return true
	}
	for _, fl := range t.follow {
		if len(fl.old) > 0 {
			return true
		}
		if fl.cur != nil {
			if _, ok := fl.cur.cls.Pending(); ok {
				return true
			}
		}
	}
	return false
}

// dirEvent notices the watched directory itself going away: its watch is
// gone with it, so the tick polls until it can watch the directory again.
func (t *Tailer) dirEvent(ev fsnotify.Event) {
	if t.watching && ev.Has(fsnotify.Remove|fsnotify.Rename) && filepath.Clean(ev.Name) == filepath.Clean(t.o.Dir) {
		t.dirGone()
	}
}

// checkDir is dirEvent for when inotify says nothing of the directory's own
// removal (it does not always): a file removed with its directory is
// drained under the tick, which looks whether the directory watched is
// still the one at the path.
func (t *Tailer) checkDir() {
	if !t.watching {
		return
	}
	fi, err := os.Stat(t.o.Dir)
	if err != nil {
		t.dirGone()
		return
	}
	if dev, ino := fileID(fi); dev != t.dirDev || ino != t.dirIno {
		t.dirGone()
	}
}

func (t *Tailer) dirGone() {
	t.log.Warn("agent log directory removed or replaced; polling until it can be watched again", "dir", t.o.Dir)
	t.watching, t.dirMissing = false, true
}

func (t *Tailer) drain(events <-chan fsnotify.Event) {
	for {
		select {
		case ev, ok := <-events:
			if !ok {
				return
			}
			t.dirEvent(ev)
		default:
			return
		}
	}
}

func (t *Tailer) addWatch(watch func() error) {
	if err := watch(); err != nil {
		if !t.dirMissing {
			t.log.Warn("agent log directory not watchable yet; polling until it is", "dir", t.o.Dir, "err", err)
			t.dirMissing = true
		}
		return
	}
	if t.dirMissing {
		t.log.Info("agent log directory is back; watching it", "dir", t.o.Dir)
	}
	t.watching, t.dirMissing = true, false
	t.dirDev, t.dirIno = 0, 0
	if fi, err := os.Stat(t.o.Dir); err == nil {
		t.dirDev, t.dirIno = fileID(fi)
	}
}

// stop persists the offsets of what was handed out. Open entries are not
// handed out: their start is the offset, so the next start reads them whole.
func (t *Tailer) stop() {
	t.o.Metrics.publish()
	t.maybePersist(true)
	for _, fl := range t.follow {
		for _, s := range append(fl.old, fl.cur) {
			if s != nil {
				s.f.Close()
			}
		}
	}
}

// pass checks every followed name (device, inode, size, first bytes) and
// reads what is new. After an inotify overflow it is the rescan.
func (t *Tailer) pass() {
	now := t.clk.Now()
	for _, fl := range t.follow {
		t.check(fl, now)
		// Truncations are looked for after the name: one that came just
		// before a rename or delete is then still seen (through the
		// descriptor) before a line of the file that followed is read.
		for _, s := range fl.old {
			s.checkTruncated(t)
		}
		if fl.cur != nil {
			fl.cur.checkTruncated(t)
		}
		// Sizes are taken newest file first and read oldest first: a
		// writer's lines in a newer file are then never handed out before
		// its earlier lines still unread in an older one.
		if fl.cur != nil {
			fl.cur.limit = fl.cur.size()
		}
		for i := len(fl.old) - 1; i >= 0; i-- {
			fl.old[i].limit = fl.old[i].size()
		}
		keep := fl.old[:0]
		for i, s := range fl.old {
			s.read(t, s.limit)
			if !now.Before(s.until) {
				s.read(t, -1)
				s.close(t)
				t.log.Debug("finished draining rotated agent log", "file", s.name, "path", s.path, "inode", s.ino, "offset", s.off)
				continue
			}
			if newer := fl.newer(i); newer != nil && newer.limit > newer.off {
				// Lines in a newer file end the entries left open in
				// this one: handing those out later would break order.
				s.cls.Flush()
			}
			keep = append(keep, s)
		}
		fl.old = keep
		if fl.cur != nil {
			fl.cur.read(t, fl.cur.limit)
		}
	}
}

// newer returns the file after old[i]: the next rotated one or the current.
func (fl *follower) newer(i int) *source {
	if i+1 < len(fl.old) {
		return fl.old[i+1]
	}
	return fl.cur
}

// check compares the file at the name with the one being read.
func (t *Tailer) check(fl *follower, now time.Time) {
	path := filepath.Join(t.o.Dir, fl.name)
	fi, err := os.Stat(path)
	if err != nil {
		if fl.cur != nil {
			t.log.Info("agent log file gone (rotated or deleted); draining the old one", "file", fl.name, "inode", fl.cur.ino, "offset", fl.cur.off, "grace", t.o.RotationGrace)
			t.retire(fl, now)
		}
		if !fl.waiting && errors.Is(err, fs.ErrNotExist) {
			t.log.Info("waiting for agent log file to appear", "path", path)
			fl.waiting = true
		} else if !fl.waiting {
			t.log.Warn("cannot stat agent log file; will retry", "path", path, "err", err)
			fl.waiting = true
		}
		return
	}
	if !fi.Mode().IsRegular() {
		return
	}
	dev, ino := fileID(fi)
	if fl.cur != nil && (fl.cur.dev != dev || fl.cur.ino != ino) {
		t.log.Info("agent log file replaced (rotated); draining the old one", "file", fl.name, "inode", fl.cur.ino, "offset", fl.cur.off, "new_inode", ino, "grace", t.o.RotationGrace)
		t.retire(fl, now)
	}
	if fl.cur == nil {
		s, err := t.open(fl.name, path, 0)
		if err != nil {
			t.log.Warn("cannot open agent log file; will retry", "path", path, "err", err)
			return
		}
		if fl.waiting {
			t.log.Info("following agent log file", "path", path)
		}
		fl.waiting = false
		fl.cur = s
		// Write the new file into the state before a line of it is handed
		// out: after a crash, a file the state does not name is never read.
		t.dirty = true
		t.maybePersist(true)
		return
	}
}

// checkTruncated looks for a truncation through the open descriptor: below
// what was read (copytruncate), or truncated and already written past it
// (the first bytes changed).
func (s *source) checkTruncated(t *Tailer) {
	size := s.size()
	if size < 0 || (size >= s.off && s.sameStart()) {
		return
	}
	t.log.Info("agent log file truncated; reading it from the start", "file", s.name, "path", s.path, "inode", s.ino, "size", size, "offset", s.off)
	t.o.Metrics.rotation(s.name)
	s.restart(t)
	// Offsets restart at 0 in the same file: a journal's records past the
	// mark must all be of one life of the file, so the offsets are written
	// before a line of the new one is handed out.
	t.maybePersist(true)
}

// retire moves the current file to the drained ones.
func (t *Tailer) retire(fl *follower, now time.Time) {
	fl.cur.until = now.Add(t.o.RotationGrace)
	fl.old = append(fl.old, fl.cur)
	fl.cur = nil
	t.o.Metrics.rotation(fl.name)
	t.dirty = true
}

// open opens path and positions it at off. Only a regular file is opened,
// without blocking: a FIFO put at a log's name while patchd was down would
// otherwise hold the tailer (and patchd's start) for good.
func (t *Tailer) open(name, path string, off int64) (*source, error) {
	f, err := safeopen.Open(path)
	if err != nil {
		return nil, err
	}
	fi, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, err
	}
	s := &source{name: name, path: path, f: f, off: off, lastData: t.clk.Now(), limit: -1, chunkAt: math.MaxInt64}
	s.dev, s.ino = fileID(fi)
	s.init(t)
	s.updateFingerprint()
	return s, nil
}

func (s *source) init(t *Tailer) {
	s.lines = t.o.Metrics.fileLines(s.name)
	s.cls = Classifier{File: s.name, emit: func(e *Entry) { t.emit(s, e) },
		file: Position{Dev: s.dev, Inode: s.ino}, fileSet: true}
	s.split = splitter{line: func(b []byte, start, end int64, cut bool) {
		if cut {
			t.o.Metrics.truncatedLine()
		}
		// A line begun in an earlier chunk is in the splitter's own
		// buffer, which it reuses, and may have a marker across the
		// chunks' boundary.
		inChunk := start >= s.chunkAt
		s.cls.noAlone, s.cls.borrow = s.clean && inChunk, inChunk
		s.cls.Feed(b, start, end)
	}}
}

// emit takes the entry by pointer: two copies fewer of it per line. The
// Classifier has set its Pos (source.init).
func (t *Tailer) emit(s *source, e *Entry) {
	s.lines.entry(e)
	t.dirty = true
	if e.Tail {
		return
	}
	t.o.Metrics.event(&e.Event, t.clk.Now)
	t.o.Sink(e.Event)
}

func (s *source) size() int64 {
	fi, err := s.f.Stat()
	if err != nil {
		return -1
	}
	return fi.Size()
}

// read reads from the current offset up to limit (-1: to EOF).
func (s *source) read(t *Tailer, limit int64) {
	for limit < 0 || s.off < limit {
		want := int64(len(t.buf))
		if limit >= 0 && limit-s.off < want {
			want = limit - s.off
		}
		n, err := s.f.ReadAt(t.buf[:want], s.off)
		if n > 0 {
			// Truncated and rewritten during the read? Then the bytes may
			// be new content at the old offset; the next check rereads
			// the file from its start instead.
			if !s.sameStart() {
				t.log.Debug("agent log file changed its first bytes during a read; rereading", "path", s.path, "offset", s.off)
				return
			}
			chunk := t.buf[:n]
			if have := int64(len(s.fp)); have < fingerprintLen && s.off <= have {
				// Grow the fingerprint from the very bytes read, so it
				// always describes the content the offset belongs to.
				from, to := have-s.off, min(int64(n), fingerprintLen-s.off)
				if from < to {
					s.fp = append(s.fp, chunk[from:to]...)
				}
				if have == 0 && len(s.fp) > 0 {
					// The file was written into the offsets while empty,
					// which names it by device and inode alone, and an
					// inode is reused at once after a delete. Write its
					// first bytes in before a line of it is handed out:
					// a restart then never takes another file for it.
					t.dirty = true
					t.maybePersist(true)
				}
			}
			s.chunkAt, s.clean = s.off, !table().hasAlone(chunk)
			s.split.push(chunk, s.off)
			s.chunkAt, s.clean = math.MaxInt64, false
			// The next read overwrites the chunk.
			s.cls.keep()
			s.off += int64(n)
			s.lastData = t.clk.Now()
			t.dirty = true
		}
		if err != nil || n == 0 {
			if err != nil && !errors.Is(err, io.EOF) {
				t.log.Warn("reading agent log file", "path", s.path, "err", err)
			}
			return
		}
	}
}

// updateFingerprint reads the first bytes of the file, up to fingerprintLen.
func (s *source) updateFingerprint() {
	b := make([]byte, fingerprintLen)
	n, _ := s.f.ReadAt(b, 0)
	s.fp = b[:n]
}

// sameStart reports whether the file still begins with the bytes seen.
func (s *source) sameStart() bool {
	if len(s.fp) == 0 {
		return true
	}
	b := make([]byte, len(s.fp))
	n, _ := s.f.ReadAt(b, 0)
	return n == len(b) && bytes.Equal(b, s.fp)
}

// restart rereads a truncated file from its start. The entry open before
// the truncation is handed out: its lines were real.
func (s *source) restart(t *Tailer) {
	s.cls.Flush()
	s.cls.Reset()
	s.split = splitter{line: s.split.line}
	s.off = 0
	s.fp = nil
	t.dirty = true
}

// close hands out what is left of a drained file and closes it.
func (s *source) close(t *Tailer) {
	s.split.flush(s.off)
	s.cls.Flush()
	s.f.Close()
	t.dirty = true
}

// committed is the offset a restart resumes at: the start of the open entry
// or line, else everything read.
func (s *source) committed() int64 {
	if start, ok := s.cls.Pending(); ok {
		return start
	}
	if s.split.pending() {
		return s.split.partAt
	}
	return s.off
}

// idleFlush hands out entries whose continuation lines stopped coming.
func (t *Tailer) idleFlush() {
	now := t.clk.Now()
	for _, fl := range t.follow {
		for _, s := range append(fl.old, fl.cur) {
			if s == nil {
				continue
			}
			if _, ok := s.cls.Pending(); ok && now.Sub(s.lastData) >= t.o.IdleFlush {
				s.cls.Flush()
			}
		}
	}
}

func (t *Tailer) maybePersist(force bool) {
	if !t.dirty || (!force && t.clk.Since(t.lastPersist) < t.o.PersistInterval) {
		return
	}
	st := t.snapshot()
	if t.o.Journal != nil {
		mark, err := t.o.Journal.Mark()
		if err != nil {
			t.log.Error("cannot make the consumer's journal durable; offsets not written this time", "path", t.o.StatePath, "err", err)
			return
		}
		st.Mark = &mark
	}
	if err := atomicfile.WriteJSON(t.o.StatePath, st, 0o600); err != nil {
		// A read-only or full state directory fails every retry: retry
		// at the persist interval, not at every tick, and say so once a
		// minute (patchd_state_write_errors_total counts each).
		t.lastPersist = t.clk.Now()
		t.persistErr.Failed(t.log, t.lastPersist, "cannot persist agent log offsets; a restart may read lines again", "path", t.o.StatePath, "err", err)
		return
	}
	t.persistErr.OK(t.log, "agent log offsets persisted again", "path", t.o.StatePath)
	t.dirty = false
	t.lastPersist = t.clk.Now()
}

// snapshot is the offsets state of every followed file.
func (t *Tailer) snapshot() offsetsState {
	st := offsetsState{Version: stateVersion}
	for _, fl := range t.follow {
		for _, s := range fl.old {
			st.Files = append(st.Files, s.state(true))
		}
		if fl.cur != nil {
			st.Files = append(st.Files, fl.cur.state(false))
		} else {
			st.Files = append(st.Files, fileState{Name: fl.name})
		}
	}
	return st
}

func (s *source) state(rotated bool) fileState {
	fs := fileState{Name: s.name, Rotated: rotated, Dev: s.dev, Inode: s.ino, Offset: s.committed(), FingerprintLen: len(s.fp)}
	if len(s.fp) > 0 {
		fs.Fingerprint = fingerprint(s.fp)
	}
	return fs
}
