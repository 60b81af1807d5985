package ssm

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/fsnotify/fsnotify"
	"github.com/jonboulle/clockwork"
	"github.com/patchd/patchd/agent/safeopen"
	"github.com/prometheus/client_golang/prometheus"
)

// Retry of a state file that does not parse. The agent writes state files
// in place (ioutil.WriteFile: truncate, then write; agent/fileutil/fileutil.go
// WriteIntoFileWithPermissions), so a reader can catch one empty or half
// written. The first retry comes soon (the rest of the write is usually
// already there); the whole schedule stays under a second, after which the
// file is reported as unparseable. A later write to it is tried again.
const (
	defaultRetryFirst    = 5 * time.Millisecond
	defaultRetryMax      = 250 * time.Millisecond
	defaultRetryAttempts = 8
)

// instanceDirName matches the agent's short instance ids: i-… on EC2, mi-…
// for hybrid and activation-registered nodes. Other folders of the agent's
// data directory (ipc/, runtimeconfig/, …) change often and are not watched
// unless they hold a document/state folder.
var instanceDirName = sync.OnceValue(func() *regexp.Regexp { return regexp.MustCompile(`^m?i-[0-9A-Za-z]+$`) })

var watchedFolders = []Folder{Pending, Current, Corrupt}

// maxHeld bounds the state files held open to read a final status after
// the delete (see gone); one per document in pending/ or current/, so a
// host reaches it only with a long queue of documents.
const maxHeld = 256

// Option changes a Watcher's defaults, for tests.
type Option func(*Watcher)

// WithClock sets the clock that times retries and stamps events.
func WithClock(c clockwork.Clock) Option { return func(w *Watcher) { w.clock = c } }

// WithStarted sets a function called once Run has set its watches and
// reported the files already there: from then on no change is missed.
func WithStarted(f func()) Option { return func(w *Watcher) { w.started = f } }

// WithFirstScan sets a function called once, from Run's goroutine, after
// the first scan and before any later event, with the documents the watcher
// holds present in pending/ and current/ (paths), a file it could not parse
// yet included: each of them gets an event when it leaves. A document that
// left before that scan is not in the list and gets no event.
func WithFirstScan(f func(present []string)) Option {
	return func(w *Watcher) { w.firstScan = f }
}

// WithRetry sets the retry schedule for files that do not parse: attempts
// retries, the first after first, doubling up to ceiling.
func WithRetry(attempts int, first, ceiling time.Duration) Option {
	return func(w *Watcher) { w.retryAttempts, w.retryFirst, w.retryMax = attempts, first, ceiling }
}

// Watcher follows amazon-ssm-agent's document state folders
// (<root>/<instance-id>/document/state/{pending,current,corrupt}) and tells
// sink what happens to each document. It is level-triggered: every
// notification only says which document to look at again, and the
// document's folder and statuses on disk decide the event, so a lost or
// reordered notification (inotify overflow, a move seen as delete+create)
// cannot produce a wrong event, only a rescan.
type Watcher struct {
	root   string
	logger *slog.Logger
	sink   func(CommandEvent)
	clock  clockwork.Clock

	retryAttempts        int
	retryFirst, retryMax time.Duration
	started              func()
	firstScan            func(present []string)
	// asks carries questions about the documents to Run's goroutine, which
	// alone knows them.
	asks chan ask

	seen        *prometheus.CounterVec
	parseErrors prometheus.Counter
	dataWatched prometheus.Gauge

	mu        sync.Mutex
	patterns  []string
	instances []string
}

// loopState belongs to Run's goroutine only.
type loopState struct {
	fsw     *fsnotify.Watcher
	watches map[string]bool
	docs    map[string]*known
	retries map[string]*retry
	bad     map[string]bool // paths already logged as unparseable
	// addFailed are directories whose watch could not be added, logged once.
	addFailed map[string]bool
	held      int  // state files held open
	waiting   bool // "waiting for the data directory" was logged
	timer     clockwork.Timer
	due       time.Time
}

type known struct {
	instance, docID string
	folder          Folder
	// unparsed: the file is there but has not parsed yet (caught half
	// written, or unreadable). It is held present so that its leaving is
	// reported, with the last status known to the consumer.
	unparsed bool
	key      string // statusKey of the last good parse
	stamp    fileStamp
	ev       CommandEvent
	// file is the state file as last read, held open (unix) so that its
	// final content can be read after the agent deletes it.
	file *os.File
}

// openState reads a state file and, where the platform allows it without
// getting in the agent's way, keeps it open (see gone).
func openState(path string) (*DocumentState, *os.File, fileStamp, error) {
	f, err := safeopen.Open(path)
	if err != nil {
		return nil, nil, fileStamp{}, err
	}
	fi, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, nil, fileStamp{}, err
	}
	if fi.Size() > MaxStateFileSize {
		f.Close()
		return nil, nil, fileStamp{}, stateTooLarge(path)
	}
	data, err := safeopen.ReadAll(f, MaxStateFileSize, path)
	if err != nil {
		f.Close()
		return nil, nil, fileStamp{}, err
	}
	s, err := ParseState(data)
	if err != nil {
		f.Close()
		return nil, nil, fileStamp{}, fmt.Errorf("state file %s: %w", path, err)
	}
	if !holdOpen {
		f.Close()
		f = nil
	}
	return s, f, stampOf(fi), nil
}

// readHeld reads a held state file again from its start.
func readHeld(f *os.File) (*DocumentState, error) {
	fi, err := f.Stat()
	if err != nil {
		return nil, err
	}
	if fi.Size() > MaxStateFileSize {
		return nil, stateTooLarge(f.Name())
	}
	data := make([]byte, fi.Size())
	n, err := f.ReadAt(data, 0)
	if err != nil && !errors.Is(err, io.EOF) {
		return nil, err
	}
	return ParseState(data[:n])
}

type fileStamp struct {
	size  int64
	mtime time.Time
	ino   uint64
}

type retry struct {
	instance, docID string
	attempt         int
	due             time.Time
}

// NewWatcher builds a watcher of the agent data directory root. Metrics
// are registered on reg; sink gets every event from Run's goroutine and
// must not block.
func NewWatcher(root string, extraPatterns []string, logger *slog.Logger, reg prometheus.Registerer, sink func(CommandEvent), opts ...Option) *Watcher {
	w := &Watcher{
		root:          filepath.Clean(root),
		logger:        logger,
		sink:          sink,
		clock:         clockwork.NewRealClock(),
		retryAttempts: defaultRetryAttempts,
		retryFirst:    defaultRetryFirst,
		retryMax:      defaultRetryMax,
		patterns:      slices.Clone(extraPatterns),
		asks:          make(chan ask),
		seen: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "patchd_agent_commands_seen_total",
			Help: "Documents seen in amazon-ssm-agent's state folders, by the folder they were seen in.",
		}, []string{"folder"}),
		parseErrors: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "patchd_agent_state_parse_errors_total",
			Help: "State files of amazon-ssm-agent that could not be parsed after retries (each file counted once).",
		}),
		dataWatched: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "patchd_agent_data_watched",
			Help: "Whether amazon-ssm-agent's data directory exists and is watched (1) or patchd waits for it (0).",
		}),
	}
	for _, o := range opts {
		o(w)
	}
	for _, f := range []Folder{Pending, Current} {
		w.seen.WithLabelValues(string(f))
	}
	if reg != nil {
		reg.MustRegister(w.seen, w.parseErrors, w.dataWatched)
	}
	return w
}

// SetPatterns replaces the extra patch document patterns (configuration
// reload). Documents seen from now on are classified with them.
func (w *Watcher) SetPatterns(patterns []string) {
	w.mu.Lock()
	w.patterns = slices.Clone(patterns)
	w.mu.Unlock()
}

func (w *Watcher) classify(s *DocumentState) PatchRun {
	w.mu.Lock()
	p := w.patterns
	w.mu.Unlock()
	return Classify(s, p)
}

// Watched returns the instance directories (<root>/<instance-id>) whose
// state folders are being watched, for `patchd status`.
func (w *Watcher) Watched() []string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return slices.Clone(w.instances)
}

// Run watches until ctx is done. Files already in pending/ and current/
// are reported as Seen first: that is how a run interrupted by a reboot is
// resumed.
func (w *Watcher) Run(ctx context.Context) error {
	fsw, err := fsnotify.NewWatcher()
	if err != nil {
		return fmt.Errorf("watch amazon-ssm-agent's data directory %s: %w (raise fs.inotify.max_user_instances)", w.root, err)
	}
	l := newLoopState(fsw)
	defer l.close()
	w.ensureWatches(l)
	w.rescan(l)
	if w.firstScan != nil {
		w.firstScan(l.present(""))
	}
	if w.started != nil {
		w.started()
	}
	for {
		w.armTimer(l)
		var timerC <-chan time.Time
		if l.timer != nil {
			timerC = l.timer.Chan()
		}
		select {
		case <-ctx.Done():
			return nil
		case ev, ok := <-fsw.Events:
			if !ok {
				return errors.New("inotify watcher closed unexpectedly")
			}
			w.handle(l, ev)
		case err, ok := <-fsw.Errors:
			if !ok {
				return errors.New("inotify watcher closed unexpectedly")
			}
			w.onError(l, err)
		case <-timerC:
			l.timer, l.due = nil, time.Time{}
			w.runRetries(l)
		case a := <-w.asks:
			// A fresh look first: what changed since the last notification
			// is reported before the answer, so the asker and the event
			// consumers never disagree.
			w.rescan(l)
			a.reply <- l.present(a.folder)
		}
	}
}

type ask struct {
	folder Folder
	reply  chan []string
}

// Documents returns the state files the watcher holds present in folder f
// (pending/ or current/; "" for both), after looking at the folders again.
// It is the one answer to "which documents does the agent have": the cycle
// and the keeper ask it instead of listing the folders themselves. It fails
// when Run does not answer before ctx ends (not running yet, or stopped).
func (w *Watcher) Documents(ctx context.Context, f Folder) ([]string, error) {
	a := ask{folder: f, reply: make(chan []string, 1)}
	select {
	case w.asks <- a:
	case <-ctx.Done():
		return nil, fmt.Errorf("the command watcher did not answer: %w", ctx.Err())
	}
	select {
	case p := <-a.reply:
		return p, nil
	case <-ctx.Done():
		return nil, fmt.Errorf("the command watcher did not answer: %w", ctx.Err())
	}
}

// present lists the paths of the documents held in folder f ("" for all).
func (l *loopState) present(f Folder) []string {
	out := []string{}
	for _, d := range l.docs {
		if f == "" || d.folder == f {
			out = append(out, d.ev.Path)
		}
	}
	sort.Strings(out)
	return out
}

// onError handles an error from inotify. Any error may mean lost
// notifications, so each one costs a full rescan.
func (w *Watcher) onError(l *loopState, err error) {
	if errors.Is(err, fsnotify.ErrEventOverflow) {
		w.logger.Warn("inotify queue overflowed; rescanning amazon-ssm-agent's state folders (raise fs.inotify.max_queued_events if this repeats)", "root", w.root)
	} else {
		w.logger.Warn("inotify error; rescanning amazon-ssm-agent's state folders", "root", w.root, "err", err)
	}
	w.fullRescan(l)
}

func newLoopState(fsw *fsnotify.Watcher) *loopState {
	return &loopState{
		fsw:       fsw,
		watches:   map[string]bool{},
		docs:      map[string]*known{},
		retries:   map[string]*retry{},
		bad:       map[string]bool{},
		addFailed: map[string]bool{},
	}
}

func (l *loopState) close() {
	if l.timer != nil {
		l.timer.Stop()
	}
	for _, d := range l.docs {
		if d.file != nil {
			d.file.Close()
		}
	}
	l.fsw.Close()
}

// fullRescan re-adds every watch and re-reads every state file: what an
// inotify overflow needs, since any notification may have been lost.
func (w *Watcher) fullRescan(l *loopState) {
	w.ensureWatches(l)
	w.rescan(l)
}

func (w *Watcher) handle(l *loopState, ev fsnotify.Event) {
	rel, err := filepath.Rel(w.root, ev.Name)
	if err != nil || rel == ".." || strings.HasPrefix(rel, ".."+string(filepath.Separator)) || rel == "." {
		// The root or an ancestor changed (created, removed): re-walk.
		w.ensureWatches(l)
		w.rescan(l)
		return
	}
	parts := strings.Split(rel, string(filepath.Separator))
	if len(parts) == 5 && parts[1] == "document" && parts[2] == "state" && isFolder(parts[3]) {
		if ev.Op == fsnotify.Chmod {
			return
		}
		w.sync(l, parts[0], parts[4], byEvent)
		return
	}
	if ev.Op == fsnotify.Chmod || !w.structural(l, ev.Name, parts) {
		return
	}
	w.ensureWatches(l)
	w.rescan(l)
}

// structural says whether a change at path (parts: relative to the root)
// can change the set of watched folders. Files the agent keeps beside the
// instance folders (credentials, runtimeconfig/, ipc/) change often and
// need no rescan.
func (w *Watcher) structural(l *loopState, path string, parts []string) bool {
	switch len(parts) {
	case 1:
		return instanceDirName().MatchString(parts[0]) || l.watches[path] || isDir(filepath.Join(path, "document", "state"))
	case 2:
		return parts[1] == "document"
	case 3:
		return parts[1] == "document" && parts[2] == "state"
	case 4:
		return parts[1] == "document" && parts[2] == "state" && isFolder(parts[3])
	}
	return false
}

func isFolder(s string) bool {
	for _, f := range watchedFolders {
		if s == string(f) {
			return true
		}
	}
	return false
}

// ensureWatches makes the inotify watches match the directories on disk:
// the root, each instance directory down to its state folders, or, while
// the root is missing, its nearest existing ancestor. A directory created
// just before its parent's watch was added raised no notification, so the
// walk repeats until it adds no watch.
func (w *Watcher) ensureWatches(l *loopState) {
	for range 20 {
		if !w.ensureWatchesOnce(l) {
			return
		}
	}
}

// ensureWatchesOnce reports whether it added a watch.
func (w *Watcher) ensureWatchesOnce(l *loopState) bool {
	added := false
	desired := map[string]bool{}
	var instances []string
	if isDir(w.root) {
		desired[w.root] = true
		if l.waiting {
			w.logger.Info("amazon-ssm-agent's data directory appeared", "path", w.root)
			l.waiting = false
		}
		entries, err := os.ReadDir(w.root)
		if err != nil {
			w.logger.Warn("cannot list amazon-ssm-agent's data directory", "path", w.root, "err", err)
		}
		for _, e := range entries {
			id := e.Name()
			inst := filepath.Join(w.root, id)
			state := filepath.Join(inst, "document", "state")
			if !e.IsDir() || (!instanceDirName().MatchString(id) && !isDir(state)) {
				continue
			}
			desired[inst] = true
			doc := filepath.Join(inst, "document")
			if !isDir(doc) {
				continue
			}
			desired[doc] = true
			if !isDir(state) {
				continue
			}
			desired[state] = true
			found := false
			for _, f := range watchedFolders {
				if d := filepath.Join(state, string(f)); isDir(d) {
					desired[d] = true
					found = true
				}
			}
			if found {
				instances = append(instances, inst)
			}
		}
		w.dataWatched.Set(1)
	} else {
		anc := filepath.Dir(w.root)
		for !isDir(anc) && anc != filepath.Dir(anc) {
			anc = filepath.Dir(anc)
		}
		desired[anc] = true
		if !l.waiting {
			w.logger.Info("waiting for amazon-ssm-agent's data directory "+w.root, "path", w.root, "watching", anc)
			l.waiting = true
		}
		w.dataWatched.Set(0)
	}
	for p := range l.watches {
		if !desired[p] {
			_ = l.fsw.Remove(p) // already gone with its directory, usually
			delete(l.watches, p)
		}
	}
	for p := range desired {
		if l.watches[p] {
			continue
		}
		if err := l.fsw.Add(p); err != nil {
			if !errors.Is(err, fs.ErrNotExist) && !l.addFailed[p] {
				l.addFailed[p] = true
				w.logger.Warn("cannot watch directory; its documents are seen only at the next rescan (raise fs.inotify.max_user_watches if the limit is reached)", "path", p, "err", err)
			}
			continue
		}
		delete(l.addFailed, p)
		l.watches[p] = true
		added = true
	}
	sort.Strings(instances)
	w.mu.Lock()
	w.instances = instances
	w.mu.Unlock()
	return added
}

func isDir(p string) bool {
	fi, err := os.Stat(p)
	return err == nil && fi.IsDir()
}

// rescan syncs every document on disk and every document known, so that
// both new files and files that left while unwatched are reported.
func (w *Watcher) rescan(l *loopState) {
	w.logger.Debug("rescanning amazon-ssm-agent's state folders", "root", w.root)
	todo := map[string][2]string{}
	for k, d := range l.docs {
		todo[k] = [2]string{d.instance, d.docID}
	}
	entries, _ := os.ReadDir(w.root)
	for _, e := range entries {
		if !e.IsDir() {
			continue
		}
		for _, f := range []Folder{Current, Pending} {
			files, _ := os.ReadDir(StateDir(w.root, e.Name(), f))
			for _, fe := range files {
				if fe.Type().IsRegular() {
					todo[docKey(e.Name(), fe.Name())] = [2]string{e.Name(), fe.Name()}
				}
			}
		}
	}
	keys := make([]string, 0, len(todo))
	for k := range todo {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		w.sync(l, todo[k][0], todo[k][1], byRescan)
	}
}

func docKey(instance, docID string) string { return instance + "/" + docID }

// syncCause says why a document is looked at again.
type syncCause int

const (
	byEvent  syncCause = iota // a notification for its file
	byRescan                  // a rescan: skip files unchanged since the last good parse
	byRetry                   // the retry timer of a file that did not parse
)

// sync looks at one document on disk and emits what changed since the
// last look.
func (w *Watcher) sync(l *loopState, instance, docID string, cause syncCause) {
	k := docKey(instance, docID)
	prev := l.docs[k]
	// A move between folders is two notifications; whichever comes first
	// finds the file at its new place. Three tries cover a file moved again
	// between the stat and the read.
	for range 3 {
		folder, path, fi := w.locate(instance, docID)
		if folder == "" {
			w.gone(l, k, prev, instance, docID)
			return
		}
		if cause == byRescan && prev != nil && prev.folder == folder && prev.stamp == stampOf(fi) {
			return
		}
		state, f, st, err := openState(path)
		if errors.Is(err, fs.ErrNotExist) {
			continue
		}
		if err != nil {
			w.parseFailed(l, k, instance, docID, path, err, cause == byRetry)
			if prev == nil {
				// Held present from now on: were it deleted before it
				// parses, its leaving must still be reported.
				l.docs[k] = &known{instance: instance, docID: docID, folder: folder, unparsed: true,
					ev: CommandEvent{Time: w.clock.Now(), InstanceID: instance, Folder: folder, Path: path, DocumentID: docID}}
			}
			return
		}
		delete(l.retries, k)
		delete(l.bad, path)
		ev := w.event(instance, docID, folder, path, state)
		key := state.statusKey()
		if prev != nil && prev.file != nil {
			prev.file.Close()
			l.held--
		}
		if f != nil && l.held >= maxHeld {
			f.Close() // many documents at once: the final status of the rest may be missed
			f = nil
		}
		if f != nil {
			l.held++
		}
		l.docs[k] = &known{instance: instance, docID: docID, folder: folder, key: key, stamp: st, ev: ev, file: f}
		switch {
		case prev == nil || prev.folder != folder || prev.unparsed:
			ev.Kind = Seen
			w.seen.WithLabelValues(string(folder)).Inc()
			w.logSeen(ev)
			w.sink(ev)
		case prev.key != key:
			ev.Kind = StatusChanged
			w.logger.Debug("agent document status changed", "document_id", docID, "document", ev.DocumentName,
				"status", ev.Status, "run_count", ev.RunCount, "steps", ev.PluginStatuses)
			w.sink(ev)
		}
		return
	}
	w.logger.Debug("agent document kept moving while read; the next notification looks again", "document_id", docID)
}

func (w *Watcher) logSeen(ev CommandEvent) {
	attrs := []any{"document_id", ev.DocumentID, "document", ev.DocumentName, "folder", ev.Folder,
		"status", ev.Status, "run_count", ev.RunCount}
	switch {
	case ev.Patch.IsPatch && strings.Contains(ev.Patch.Reason, "treated as"):
		w.logger.Warn("agent patch document seen; "+ev.Patch.Reason, attrs...)
	case ev.Patch.IsPatch:
		w.logger.Info("agent patch document seen", append(attrs, "operation", ev.Patch.Operation, "opens_cycle", ev.Patch.OpensCycle)...)
	default:
		w.logger.Debug("agent document seen", attrs...)
	}
}

// locate finds the document in current/ or pending/. pending/ is looked at
// first: a move pending/ -> current/ between the two looks then finds the
// file in current/, where the other order would miss it in both. When both
// exist, current/ wins (the pending copy is stale).
func (w *Watcher) locate(instance, docID string) (Folder, string, fs.FileInfo) {
	var folder Folder
	var path string
	var info fs.FileInfo
	for _, f := range []Folder{Pending, Current} {
		p := filepath.Join(StateDir(w.root, instance, f), docID)
		if fi, err := os.Lstat(p); err == nil && fi.Mode().IsRegular() {
			folder, path, info = f, p, fi
		}
	}
	return folder, path, info
}

func (w *Watcher) gone(l *loopState, k string, prev *known, instance, docID string) {
	delete(l.retries, k)
	for _, f := range []Folder{Pending, Current} {
		delete(l.bad, filepath.Join(StateDir(w.root, instance, f), docID))
	}
	if prev == nil {
		return
	}
	delete(l.docs, k)
	ev := prev.ev
	// The agent writes the final status in place and deletes the file right
	// after. The descriptor held since the last read still reaches that
	// inode, so the final status is read even when the path is gone.
	if prev.file != nil {
		final, err := readHeld(prev.file)
		prev.file.Close()
		l.held--
		if err == nil && final.statusKey() != prev.key {
			ev = w.event(instance, docID, prev.folder, prev.ev.Path, final)
			ev.Kind = StatusChanged
			w.logger.Debug("agent document status changed just before it left", "document_id", docID, "document", ev.DocumentName,
				"status", ev.Status, "run_count", ev.RunCount, "steps", ev.PluginStatuses)
			w.sink(ev)
		}
	}
	ev.Kind = Gone
	ev.Time = w.clock.Now()
	ev.Folder = ""
	ev.Path = prev.ev.Path
	corrupt := filepath.Join(StateDir(w.root, instance, Corrupt), docID)
	if fi, err := os.Lstat(corrupt); err == nil && fi.Mode().IsRegular() {
		ev.Folder = Corrupt
		ev.Path = corrupt
		w.logger.Warn("amazon-ssm-agent moved a document to corrupt/", "document_id", docID, "document", ev.DocumentName, "path", corrupt)
	} else if prev.unparsed {
		w.logger.Info("agent document left before its state file could be read", "document_id", docID, "from", prev.folder)
	} else {
		w.logger.Debug("agent document gone", "document_id", docID, "document", ev.DocumentName, "from", prev.folder)
	}
	w.sink(ev)
}

// parseFailed schedules another look at a file that did not parse. Only
// the timer's retries count towards giving up; a notification (the file
// was written again) starts the schedule over, so a large write that
// raises several notifications never uses it up, and a write that lands
// just after the last retry is still looked at.
func (w *Watcher) parseFailed(l *loopState, k, instance, docID, path string, err error, fromTimer bool) {
	r := l.retries[k]
	if r == nil || !fromTimer {
		l.retries[k] = &retry{instance: instance, docID: docID, due: w.clock.Now().Add(w.retryFirst)}
		return
	}
	if r.attempt+1 >= w.retryAttempts {
		delete(l.retries, k)
		if !l.bad[path] {
			l.bad[path] = true
			w.parseErrors.Inc()
			w.logger.Error("cannot parse amazon-ssm-agent's state file; skipping it until it is written again",
				"path", path, "err", err)
		}
		w.logger.Debug("state file still unparseable after retries", "path", path, "err", err)
		return
	}
	r.attempt++
	d := w.retryFirst << r.attempt
	if d > w.retryMax || d <= 0 {
		d = w.retryMax
	}
	r.due = w.clock.Now().Add(d)
}

// armTimer points the retry timer at the earliest due retry.
func (w *Watcher) armTimer(l *loopState) {
	var next time.Time
	for _, r := range l.retries {
		if next.IsZero() || r.due.Before(next) {
			next = r.due
		}
	}
	if next.IsZero() {
		if l.timer != nil {
			l.timer.Stop()
			l.timer, l.due = nil, time.Time{}
		}
		return
	}
	if l.timer != nil && l.due.Equal(next) {
		return
	}
	if l.timer != nil {
		l.timer.Stop()
	}
	l.timer = w.clock.NewTimer(max(next.Sub(w.clock.Now()), 0))
	l.due = next
}

func (w *Watcher) runRetries(l *loopState) {
	now := w.clock.Now()
	var due []*retry
	for _, r := range l.retries {
		if !r.due.After(now) {
			due = append(due, r)
		}
	}
	sort.Slice(due, func(i, j int) bool { return due[i].due.Before(due[j].due) })
	for _, r := range due {
		w.sync(l, r.instance, r.docID, byRetry)
	}
}

func (w *Watcher) event(instance, docID string, folder Folder, path string, s *DocumentState) CommandEvent {
	di := s.DocumentInformation
	return CommandEvent{
		Time:                   w.clock.Now(),
		InstanceID:             instance,
		Folder:                 folder,
		Path:                   path,
		DocumentID:             docID,
		CommandID:              di.CommandID,
		AssociationID:          di.AssociationID,
		RunID:                  di.RunID,
		MessageID:              di.MessageID,
		DocumentName:           di.DocumentName,
		DocumentType:           s.DocumentType,
		Status:                 di.DocumentStatus,
		RunCount:               di.RunCount,
		PluginStatuses:         s.PluginStatuses(),
		OrchestrationDirectory: s.IOConfig.OrchestrationDirectory,
		Patch:                  w.classify(s),
	}
}

func stampOf(fi fs.FileInfo) fileStamp {
	return fileStamp{size: fi.Size(), mtime: fi.ModTime(), ino: inode(fi)}
}
