package hooks

// Recorder is told what the runner and the watcher see, for the daemon's
// metrics; hookmetrics.New is the Prometheus one. The interface keeps a
// metrics library out of this package: `patchd hooks run` links it, and
// the CLI's start-up pays for every package it links (docs/design.md,
// "Two binaries").
type Recorder interface {
	// HookRun is told of a hook that ran to its end, whatever its
	// outcome, or was refused. A run interrupted by patchd stopping is
	// not a result and is not told.
	HookRun(res Result)
	// PhaseRun is told when a run of a phase's hooks that ran or refused
	// at least one hook ends; ok when every hook succeeded.
	PhaseRun(p Phase, ok bool)
	// Refused is told the watcher's count of refused hooks in phase p
	// after each scan of the hooks tree.
	Refused(p Phase, n int)
}

// nopRecorder records nothing: a runner or watcher given no Recorder.
type nopRecorder struct{}

func (nopRecorder) HookRun(Result)       {}
func (nopRecorder) PhaseRun(Phase, bool) {}
func (nopRecorder) Refused(Phase, int)   {}

// orNop returns rec, or a Recorder that records nothing for nil.
func orNop(rec Recorder) Recorder {
	if rec == nil {
		return nopRecorder{}
	}
	return rec
}

// recordPhase tells rec of a phase run that ran or refused at least one
// hook.
func recordPhase(rec Recorder, p Phase, results []Result) {
	if len(results) == 0 {
		return
	}
	rec.PhaseRun(p, PhaseSucceeded(results))
}

// RecordPhase lets a caller that reran hooks itself (post-patch retries)
// report the phase's final results.
func (r *Runner) RecordPhase(p Phase, results []Result) { recordPhase(r.rec, p, results) }
