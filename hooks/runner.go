package hooks

import (
	"context"
	"fmt"
	"log/slog"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"time"
)

// Defaults for a zero Options field.
const (
	DefaultTimeout      = 5 * time.Minute
	DefaultKillGrace    = 10 * time.Second
	DefaultDrainTimeout = 2 * time.Second
	DefaultMaxLogBytes  = 1 << 20
)

// Options set how hooks run. A zero field takes its default.
type Options struct {
	// Timeout bounds one hook; then its process group gets SIGTERM.
	Timeout time.Duration
	// PhaseTimeouts override Timeout per phase.
	PhaseTimeouts map[Phase]time.Duration
	// KillGrace is the time between SIGTERM and SIGKILL of the group.
	KillGrace time.Duration
	// DrainTimeout is how long output is still read after the hook itself
	// exited: a background child that keeps the hook's stdout open must
	// not hold patchd, so after this the pipes are closed on it.
	DrainTimeout time.Duration
	// MaxLogBytes caps how much of each stream of one hook run is logged.
	MaxLogBytes int64
	// Logger gets the hook's output line by line and the runner's notes.
	Logger *slog.Logger
	// ProgressLevel is the level of the "hook starting" and "hook
	// finished" lines. The zero value is Info: the daemon's journal wants
	// them. `patchd hooks run` prints its own line for each hook as it
	// ends, so it logs them at Debug; the same news twice is noise, and a
	// formatted record costs about as much CPU as run-parts spends on a
	// hook (BENCHMARKS.md, "Hooks").
	ProgressLevel slog.Level
}

func (o Options) withDefaults() Options {
	if o.Timeout <= 0 {
		o.Timeout = DefaultTimeout
	}
	if o.KillGrace <= 0 {
		o.KillGrace = DefaultKillGrace
	}
	if o.DrainTimeout <= 0 {
		o.DrainTimeout = DefaultDrainTimeout
	}
	if o.MaxLogBytes <= 0 {
		o.MaxLogBytes = DefaultMaxLogBytes
	}
	if o.Logger == nil {
		o.Logger = discardLogger
	}
	return o
}

func (o Options) timeout(p Phase) time.Duration {
	if d, ok := o.PhaseTimeouts[p]; ok && d > 0 {
		return d
	}
	return o.Timeout
}

// WithStarted returns a context under which RunHook calls started with
// the hook's process group id (its leader's pid) right after the hook
// started, before it waits for it: the cycle records it, so that a patchd
// killed during the hook can find the orphaned run after its restart.
func WithStarted(ctx context.Context, started func(pgid int)) context.Context {
	return context.WithValue(ctx, startedKey{}, started)
}

type startedKey struct{}

// HookTimeout is the timeout of a hook of phase p under the options in
// force.
func (r *Runner) HookTimeout(p Phase) time.Duration { return r.Options().timeout(p) }

// Runner runs hooks one at a time and tells its Recorder about them. It is
// safe for concurrent use, but a cycle runs one phase at a time anyway.
type Runner struct {
	mu   sync.Mutex
	opts Options
	rec  Recorder
}

// NewRunner returns a runner that tells rec of every run (nil: nobody, as
// in the CLI).
func NewRunner(opts Options, rec Recorder) *Runner {
	return &Runner{opts: opts.withDefaults(), rec: orNop(rec)}
}

// SetOptions replaces the options for the hooks started after it (a
// configuration reload); a running hook keeps the options it started with.
func (r *Runner) SetOptions(opts Options) {
	r.mu.Lock()
	r.opts = opts.withDefaults()
	r.mu.Unlock()
}

// Options returns the options in force.
func (r *Runner) Options() Options {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.opts
}

// RunHook runs one hook to its end and returns its record. The hook is
// inspected again first, so a file that became unsafe after it was listed
// is refused. env.Phase must be h.Phase. A dry run starts nothing.
// Cancelling ctx (patchd stopping) kills the hook's group like a timeout;
// the result is then Interrupted (not told to the Recorder) and the
// caller should treat the hook as not finished.
func (r *Runner) RunHook(ctx context.Context, h Hook, env Env) Result {
	opts := r.Options()
	env.Phase = h.Phase
	if env.Attempt < 1 {
		env.Attempt = 1
	}
	res := Result{Phase: h.Phase, Name: h.Name, ExitCode: -1, Start: time.Now(), Attempt: env.Attempt}
	if h.State == Runnable {
		h = Inspect(filepath.Dir(filepath.Dir(h.Path)), h.Phase, h.Name)
	}
	log := opts.Logger.With("phase", h.Phase, "hook", h.Name)
	switch {
	case h.State == Refused:
		res.Outcome, res.Error = Refusal, h.Reason
		log.Error("hook refused, not run", "reason", h.Reason)
		r.rec.HookRun(res)
		return res
	case h.State != Runnable:
		res.Outcome, res.Error = NotRun, "skipped: "+h.Reason
		return res
	case env.DryRun:
		res.Outcome = DryRun
		log.Info("dry run: hook would run", "path", h.Path)
		return res
	case ctx.Err() != nil:
		res.Outcome, res.Interrupted = Failed, true
		res.Error = "not started: patchd is stopping"
		return res
	}

	timeout := opts.timeout(h.Phase)
	log.Log(ctx, opts.ProgressLevel, "hook starting", "path", h.Path, "attempt", env.Attempt, "timeout", timeout)
	run := execute(ctx, h, env, opts, timeout, log)
	res.ExitCode, res.Duration = run.exitCode, run.duration
	res.StdoutTail, res.StderrTail = run.stdout, run.stderr
	switch {
	case run.startErr != nil:
		res.Outcome = Failed
		res.Error = fmt.Sprintf("cannot start %s: %v (check its #! line and that its interpreter is installed)", h.Target, run.startErr)
	case run.timedOut:
		res.Outcome = TimedOut
		res.Error = fmt.Sprintf("timed out after %s; its process group was killed", timeout)
	case run.cancelled:
		res.Outcome, res.Interrupted = Failed, true
		res.Error = "interrupted: patchd is stopping; the hook was killed"
	case run.exitCode == 0:
		res.Outcome = Success
	case run.signal != 0:
		res.Outcome = Failed
		res.Error = "killed by signal " + run.signal.String()
	default:
		res.Outcome = Failed
		res.Error = fmt.Sprintf("exit status %d", run.exitCode)
	}
	if run.leftover {
		log.Warn("hook left a background process holding its output; patchd stopped reading it", "waited", opts.DrainTimeout)
	}
	if res.Outcome == Success {
		log.Log(ctx, opts.ProgressLevel, "hook finished", "result", res.Outcome, "duration", res.Duration)
	} else {
		log.Error("hook failed", "result", res.Outcome, "exit_code", res.ExitCode, "duration", res.Duration, "err", res.Error)
	}
	if !res.Interrupted {
		r.rec.HookRun(res)
	}
	return res
}

// run is what execute learned about one process.
type run struct {
	startErr  error
	exitCode  int
	signal    syscall.Signal
	timedOut  bool
	cancelled bool
	leftover  bool // pipes still held open after DrainTimeout
	duration  time.Duration
	stdout    string
	stderr    string
}

// PhaseOptions connect a phase run to the cycle's persisted state.
type PhaseOptions struct {
	// Skip reports a hook that already finished in this cycle (resume
	// after a crash); it is neither run nor reported.
	Skip func(h Hook) bool
	// Finished, like Skip, passes over a hook that already finished in this
	// cycle, but gives its result: it counts for the policy (a pre-patch
	// hook that failed before a restart still stops the rest).
	Finished func(h Hook) (Result, bool)
	// OnStart is called before a hook starts (the cycle persists "attempt
	// N started"); an error aborts the phase.
	OnStart func(h Hook) error
	// OnResult is called after each hook that ended (success, failure,
	// timeout, refusal, dry run), not for hooks reported NotRun and not for
	// a hook interrupted because ctx ended; an error aborts the phase.
	OnResult func(res Result) error
	// Attempt gives a hook's PATCHD_ATTEMPT; nil uses env.Attempt (or 1).
	Attempt func(h Hook) int
}

// RunPhase discovers the hooks of env.Phase under root and runs them under
// the phase policy (RunHooks).
func (r *Runner) RunPhase(ctx context.Context, root string, env Env, p PhaseOptions) ([]Result, error) {
	list, err := Discover(root, env.Phase)
	if err != nil {
		return nil, err
	}
	results, err := RunHooks(ctx, list, env, r.RunHook, p)
	if err == nil && !env.DryRun {
		recordPhase(r.rec, env.Phase, results)
	}
	return results, err
}

// StopsPhase reports whether a hook's result stops the rest of its phase:
// in pre-patch, anything but a success (or a dry run); the other phases run
// every hook.
func StopsPhase(res Result) bool {
	return res.Phase == PrePatch && res.Outcome != Success && res.Outcome != DryRun
}

// RunHooks is the phase policy (docs/design.md, "The patch cycle"), the one place it is decided
// for `patchd hooks run` and the daemon's cycle alike: the hooks of list run
// in lexical order through run; in pre-patch the first that does not
// succeed stops the phase and the rest are reported NotRun (OnResult is not
// called for them); a hook the stop of patchd interrupted (its result says
// Interrupted: the signal ended it) did not finish and must run again,
// while one that exited on its own during the stop, even non-zero after
// trapping the signal, finished with that result. Skipped files are not
// reported. The error is not about hooks failing (that is in the results)
// but about the phase not being carried out: a callback failed or ctx
// ended (patchd stopping), in which case the interrupted hook is absent
// from the results.
func RunHooks(ctx context.Context, list []Hook, env Env, run func(context.Context, Hook, Env) Result, p PhaseOptions) ([]Result, error) {
	list = slices.Clone(list)
	slices.SortFunc(list, func(a, b Hook) int { return strings.Compare(a.Name, b.Name) })
	var results []Result
	failedAt := ""
	for _, h := range list {
		if h.State == Skipped || (p.Skip != nil && p.Skip(h)) {
			continue
		}
		if p.Finished != nil {
			if prev, ok := p.Finished(h); ok {
				if failedAt == "" && StopsPhase(prev) {
					failedAt = h.Name
				}
				continue
			}
		}
		if failedAt != "" {
			results = append(results, Result{Phase: h.Phase, Name: h.Name, Outcome: NotRun, ExitCode: -1,
				Error: "not run: pre-patch hook " + failedAt + " did not succeed"})
			continue
		}
		if err := ctx.Err(); err != nil {
			return results, fmt.Errorf("%s phase interrupted before hook %s: %w", env.Phase, h.Name, err)
		}
		e := env
		if p.Attempt != nil {
			e.Attempt = p.Attempt(h)
		}
		if p.OnStart != nil && h.State == Runnable && !env.DryRun {
			if err := p.OnStart(h); err != nil {
				return results, fmt.Errorf("%s phase stopped before hook %s: %w", env.Phase, h.Name, err)
			}
		}
		res := run(ctx, h, e)
		if res.Interrupted {
			return results, fmt.Errorf("%s phase interrupted during hook %s: %w", env.Phase, h.Name, ctx.Err())
		}
		if p.OnResult != nil {
			if err := p.OnResult(res); err != nil {
				return append(results, res), fmt.Errorf("%s phase stopped after hook %s: %w", env.Phase, h.Name, err)
			}
		}
		results = append(results, res)
		if StopsPhase(res) {
			failedAt = h.Name
		}
	}
	return results, nil
}

// PhaseSucceeded reports whether every result is a success (or a dry run):
// the answer for `patchd hooks run`'s and the gate's exit code.
func PhaseSucceeded(results []Result) bool {
	for _, res := range results {
		if res.Outcome != Success && res.Outcome != DryRun {
			return false
		}
	}
	return true
}
