package ssm

import (
	"github.com/fsnotify/fsnotify"
)

// Loop drives a watcher's loop state by hand, without Run, so a test can
// reach paths inotify cannot be made to take on demand (an overflow).
type Loop struct {
	w *Watcher
	l *loopState
}

// StartLoop sets up the watches and does the start-up scan.
func StartLoop(w *Watcher) (*Loop, error) {
	fsw, err := fsnotify.NewWatcher()
	if err != nil {
		return nil, err
	}
	l := newLoopState(fsw)
	w.ensureWatches(l)
	w.rescan(l)
	return &Loop{w: w, l: l}, nil
}

// Overflow takes the path of an inotify queue overflow.
func (x *Loop) Overflow() { x.w.onError(x.l, fsnotify.ErrEventOverflow) }

// Close releases the inotify instance.
func (x *Loop) Close() { x.l.close() }
