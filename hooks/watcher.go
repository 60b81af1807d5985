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
	"github.com/prometheus/client_golang/prometheus"
)

// DefaultResync is how often the Watcher rescans even without events: a
// symlink's target or a parent directory's mode can change where inotify
// does not look, and the hooks root may appear only after patchd started.
const DefaultResync = time.Minute

// Watcher keeps the hook lists of every phase current: it rescans the
// hooks tree on every change fsnotify reports, including phase directories
// created after it started, and sets patchd_hooks_refused{phase}.
type Watcher struct {
	root   string
	logger *slog.Logger
	resync time.Duration

	refused *prometheus.GaugeVec

	mu      sync.Mutex
	lists   map[Phase][]Hook
	errs    map[Phase]string
	changed chan struct{} // closed and replaced after each scan
}

// NewWatcher scans root once, so List answers before Run starts, and
// registers patchd_hooks_refused on reg (nil: not registered).
func NewWatcher(root string, logger *slog.Logger, reg prometheus.Registerer) *Watcher {
	if logger == nil {
		logger = discardLogger
	}
	w := &Watcher{
		root:   root,
		logger: logger,
		resync: DefaultResync,
		refused: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "patchd_hooks_refused",
			Help: "Hooks refused as unsafe (owner, writable by others, unsafe directory), by phase; they never run.",
		}, []string{"phase"}),
		lists:   map[Phase][]Hook{},
		errs:    map[Phase]string{},
		changed: make(chan struct{}),
	}
	for _, p := range Phases {
		w.refused.WithLabelValues(string(p))
	}
	if reg != nil {
		reg.MustRegister(w.refused)
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
			// watch before its files can be seen.
			if ev.Has(fsnotify.Create) {
				w.addWatches(fw)
			}
			w.scan()
		case err, ok := <-errs:
			if !ok {
				errs = nil
				continue
			}
			// An overflow loses events: rescan so nothing is missed.
			w.logger.Warn("watching the hooks directory", "path", w.root, "err", err)
			w.scan()
		case <-tick.C:
			if fw != nil {
				w.addWatches(fw)
			}
			w.scan()
		}
	}
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
	lists := map[Phase][]Hook{}
	errs := map[Phase]string{}
	for _, p := range Phases {
		hs, err := Discover(w.root, p)
		if err != nil {
			errs[p] = err.Error()
		}
		lists[p] = hs
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
		n := 0
		before := map[string]Hook{}
		for _, h := range old[p] {
			before[h.Name] = h
		}
		for _, h := range lists[p] {
			if h.State == Refused {
				n++
			}
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
		w.refused.WithLabelValues(string(p)).Set(float64(n))
	}
	close(ch)
}
