package hooks

import (
	"context"
	"errors"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"time"

	"github.com/fsnotify/fsnotify"
)

// DefaultResync is how often the Watcher rescans even without events: a
// symlink's target or a parent directory's mode can change where inotify
// does not look, and the hooks root may appear only after patchd started.
const DefaultResync = time.Minute

// DefaultDebounce gathers a burst of changes (a package installing many
// hooks, an rsync of the tree) into one rescan: rescanning on every event
// made creating 10,000 hooks cost minutes of CPU, the cost growing with
// the square of the count.
const DefaultDebounce = 100 * time.Millisecond

// rescanCostFactor keeps rescans to a tenth of the time under a steady
// stream of changes: the wait before the next rescan is at least this many
// times what the last one took.
const rescanCostFactor = 10

// maxRescanDelay bounds how late a change is seen, however large the tree.
const maxRescanDelay = 5 * time.Second

// Watcher keeps the hook lists of every phase current: it rescans the
// hooks tree after the changes fsnotify reports (gathered, see
// DefaultDebounce), including phase directories created after it started,
// and tells its Recorder how many hooks each phase refuses
// (patchd_hooks_refused{phase}).
type Watcher struct {
	root     string
	logger   *slog.Logger
	resync   time.Duration
	debounce time.Duration
	lastCost time.Duration // of the last scan; only Run's goroutine (and NewWatcher) use it

	rec Recorder

	mu      sync.Mutex
	lists   map[Phase][]Hook
	errs    map[Phase]string
	changed chan struct{} // closed and replaced after each scan
}

// NewWatcher scans root once, so List answers before Run starts; rec is
// told the refused hooks after every scan (nil: nobody).
func NewWatcher(root string, logger *slog.Logger, rec Recorder) *Watcher {
	if logger == nil {
		logger = discardLogger
	}
	w := &Watcher{
		root:     root,
		logger:   logger,
		resync:   DefaultResync,
		debounce: DefaultDebounce,
		rec:      orNop(rec),
		lists:    map[Phase][]Hook{},
		errs:     map[Phase]string{},
		changed:  make(chan struct{}),
	}
	w.scan()
	return w
}

// List returns the current hooks of phase, skipped and refused files
// included.
func (w *Watcher) List(phase Phase) []Hook {
	w.mu.Lock()
	defer w.mu.Unlock()
	return slices.Clone(w.lists[phase])
}

// Changed returns a channel closed after the next scan. Tests and callers
// that must see a change wait on it instead of sleeping.
func (w *Watcher) Changed() <-chan struct{} {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.changed
}

// Run watches until ctx is done. Without inotify (the limit of watches is
// reached) it falls back to rescanning every resync interval.
func (w *Watcher) Run(ctx context.Context) error {
	fw, err := fsnotify.NewWatcher()
	if err != nil {
		w.logger.Error("cannot watch the hooks directory; rescanning it every interval instead",
			"path", w.root, "interval", w.resync, "err", err)
		fw = nil
	} else {
		defer fw.Close()
		w.addWatches(fw)
	}
	// What changed between NewWatcher's scan and the watches is seen here;
	// this scan also tells Changed waiters that Run is watching.
	w.scan()
	tick := time.NewTicker(w.resync)
	defer tick.Stop()
	var events <-chan fsnotify.Event
	var errs <-chan error
	if fw != nil {
		events, errs = fw.Events, fw.Errors
	}
	// Changes are gathered: the first arms a timer, the rescan runs when it
	// fires and sees everything that happened until then.
	var flush <-chan time.Time
	var flushTimer *time.Timer
	defer func() {
		if flushTimer != nil {
			flushTimer.Stop()
		}
	}()
	needWatches := false
	schedule := func() {
		if flush == nil {
			flushTimer = time.NewTimer(w.rescanDelay())
			flush = flushTimer.C
		}
	}
	for {
		select {
		case <-ctx.Done():
			return nil
		case ev, ok := <-events:
			if !ok {
				events = nil
				continue
			}
			w.logger.Debug("hooks directory changed", "path", ev.Name, "op", ev.Op.String())
			// A new phase directory (or a recreated root) needs its own
			// watch; it is added before the rescan, which then sees
			// whatever was created in it before the watch.
			if ev.Has(fsnotify.Create) {
				needWatches = true
			}
			schedule()
		case err, ok := <-errs:
			if !ok {
				errs = nil
				continue
			}
			// An overflow loses events: rescan so nothing is missed.
			w.logger.Warn("watching the hooks directory", "path", w.root, "err", err)
			needWatches = true
			schedule()
		case <-flush:
			flush, flushTimer = nil, nil
			if needWatches && fw != nil {
				w.addWatches(fw)
				needWatches = false
			}
			w.scan()
		case <-tick.C:
			if fw != nil {
				w.addWatches(fw)
			}
			w.scan()
		}
	}
}

// rescanDelay is the wait between a change and its rescan: the debounce,
// or longer when the last scan was costly, never more than maxRescanDelay.
func (w *Watcher) rescanDelay() time.Duration {
	d := w.debounce
	if c := rescanCostFactor * w.lastCost; c > d {
		d = c
	}
	return min(d, maxRescanDelay)
}

// addWatches watches the root and each phase directory that exists.
// Adding a path already watched is harmless.
func (w *Watcher) addWatches(fw *fsnotify.Watcher) {
	for _, d := range append([]string{w.root}, phaseDirs(w.root)...) {
		if err := fw.Add(d); err != nil && !errors.Is(err, os.ErrNotExist) {
			w.logger.Warn("cannot watch hooks directory; changes are seen at the next rescan", "path", d, "err", err)
		}
	}
}

func phaseDirs(root string) []string {
	out := make([]string, len(Phases))
	for i, p := range Phases {
		out[i] = filepath.Join(root, string(p))
	}
	return out
}

// scan rediscovers every phase, logs what changed, and wakes Changed.
func (w *Watcher) scan() {
	start := time.Now()
	defer func() { w.lastCost = time.Since(start) }()
	lists := map[Phase][]Hook{}
	errs := map[Phase]string{}
	for _, p := range Phases {
		hs, err := Discover(w.root, p)
		if err != nil {
			errs[p] = err.Error()
		}
		lists[p] = hs
		// Told before the lists change, so that whoever sees the new
		// list in List sees its count too.
		n := 0
		for _, h := range hs {
			if h.State == Refused {
				n++
			}
		}
		w.rec.Refused(p, n)
	}
	w.mu.Lock()
	old, oldErrs := w.lists, w.errs
	w.lists, w.errs = lists, errs
	ch := w.changed
	w.changed = make(chan struct{})
	w.mu.Unlock()

	for _, p := range Phases {
		if errs[p] != "" && errs[p] != oldErrs[p] {
			w.logger.Error("cannot read hooks directory", "phase", p, "err", errs[p])
		}
		before := map[string]Hook{}
		for _, h := range old[p] {
			before[h.Name] = h
		}
		for _, h := range lists[p] {
			if b, ok := before[h.Name]; ok && b.State == h.State && b.Reason == h.Reason {
				continue
			}
			switch h.State {
			case Refused:
				w.logger.Warn("hook refused; it will not run", "phase", p, "hook", h.Name, "reason", h.Reason)
			case Runnable:
				w.logger.Info("hook ready", "phase", p, "hook", h.Name)
			default:
				w.logger.Debug("file skipped", "phase", p, "hook", h.Name, "reason", h.Reason)
			}
		}
	}
	close(ch)
}
