package atomicfile

import (
	"context"
	"log/slog"
	"runtime"
	"sync/atomic"
	"time"
)

// failures counts failed writes of patchd's state files since start, for
// patchd_state_write_errors_total: a read-only or full state directory
// otherwise shows only in the log, and state that is not saved is lost at
// the next crash.
var failures atomic.Uint64

// Failures returns how many state writes have failed since start.
func Failures() uint64 { return failures.Load() }

// CountFailure counts a failed state write that did not go through
// WriteFile (an append to a journal).
func CountFailure() { failures.Add(1) }

// ErrorLog rate-limits the log of a state file that keeps failing to be
// written (a read-only or full disk fails every retry): the first failure
// is logged at once, then at most one line per Every with the number of
// failures since, and the first success after failures once. Its owner
// calls it from one goroutine.
type ErrorLog struct {
	// Every is the least time between two lines about failures; zero
	// means a minute.
	Every time.Duration

	failing bool
	last    time.Time
	since   int
}

// Failed logs err at error level unless a line went out less than Every
// ago; the count of failures left out goes with the next line.
func (l *ErrorLog) Failed(log *slog.Logger, now time.Time, msg string, args ...any) {
	every := l.Every
	if every <= 0 {
		every = time.Minute
	}
	l.since++
	if l.failing && now.Sub(l.last) < every {
		return
	}
	if l.failing {
		args = append(args, "failures_since_last_line", l.since, "next_line_in", every)
	}
	logAt(log, slog.LevelError, msg, args...)
	l.failing, l.last, l.since = true, now, 0
}

// OK notes a successful write: after failures, one line says so.
func (l *ErrorLog) OK(log *slog.Logger, msg string, args ...any) {
	if !l.failing {
		return
	}
	logAt(log, slog.LevelInfo, msg, append(args, "failures_since_last_line", l.since)...)
	l.failing, l.since = false, 0
}

// logAt logs with the source of Failed's or OK's caller, not this file's.
func logAt(log *slog.Logger, level slog.Level, msg string, args ...any) {
	ctx := context.Background()
	if !log.Enabled(ctx, level) {
		return
	}
	var pcs [1]uintptr
	runtime.Callers(3, pcs[:]) // runtime.Callers, logAt, Failed or OK
	r := slog.NewRecord(time.Now(), level, msg, pcs[0])
	r.Add(args...)
	_ = log.Handler().Handle(ctx, r)
}
