package cycle

import (
	"context"
	"errors"
	"time"

	"github.com/patchd/patchd/agent/ssm"
	"github.com/patchd/patchd/hooks"
)

// runPhase runs a phase's hooks one at a time, persisting before the phase,
// at each hook's start (to count attempts) and at its end. A hook cut short
// by the stop of patchd stays unfinished and runs again after the restart.
func (e *Engine) runPhase(ctx context.Context, c *Cycle, phase hooks.Phase) {
	name := string(phase)
	ps := c.PhaseState(name)
	c.Phase = name
	if !ps.Started {
		ps.Started = true
		e.log.Info("phase starting", "cycle", c.ID, "phase", name)
	} else {
		e.log.Info("phase resuming", "cycle", c.ID, "phase", name)
	}
	// The phase's start is written with its first hook's start, which
	// comes before anything of the phase happens; a phase without hooks is
	// written when it is done.
	e.m.setPhase(name)
	defer e.m.setPhase("")

	list, err := e.o.Runner.Discover(phase)
	if err != nil {
		// A missing or unreadable hooks directory: record it; pre-patch
		// fails so a gate does not let the patch run unchecked.
		ps.Error = err.Error()
		e.log.Error("cannot list hooks", "phase", name, "err", err)
		if phase == hooks.PrePatch {
			ps.Failed = true
		}
	}
	// The phase policy is hooks.RunHooks, the same as `patchd hooks run`;
	// the callbacks persist each step so that a restart resumes it.
	run := func(ctx context.Context, h hooks.Hook, env hooks.Env) hooks.Result {
		if h.State == hooks.Refused {
			return e.runOne(ctx, h, env)
		}
		return e.runTracked(ctx, c, ps, ps.Hook(h.Name, name), h, env)
	}
	results, err := hooks.RunHooks(ctx, list, e.env(c, phase, 1), run, hooks.PhaseOptions{
		Finished: func(h hooks.Hook) (hooks.Result, bool) {
			for _, hs := range ps.Hooks {
				if hs.Name == h.Name && hs.Finished {
					return hooks.Result{Phase: phase, Name: h.Name, Outcome: hooks.Outcome(hs.Outcome)}, true
				}
			}
			return hooks.Result{}, false
		},
		Attempt: func(h hooks.Hook) int {
			hs := ps.Hook(h.Name, name)
			if h.State == hooks.Refused {
				return max(hs.Attempt, 1)
			}
			return hs.Attempt + 1
		},
		OnStart: func(h hooks.Hook) error {
			if !e.hookStarting(ctx, c, ps, h, ps.Hook(h.Name, name)) {
				return errors.New("patchd is stopping while an earlier run of the hook still runs")
			}
			return nil
		},
		OnResult: func(res hooks.Result) error { e.hookEnded(c, ps, ps.Hook(res.Name, name), res); return nil },
	})
	e.running.Store(nil)
	if err != nil {
		e.log.Warn("phase cut short by the stop of patchd; the unfinished hook runs again after the restart", "cycle", c.ID, "phase", name, "err", err)
		return
	}
	// Pre-patch hooks after a failure are recorded as not run, as
	// `patchd hooks run` reports them.
	for _, res := range results {
		if res.Outcome == hooks.NotRun {
			hs := ps.Hook(res.Name, name)
			hs.Outcome, hs.ExitCode, hs.Error, hs.Finished = string(hooks.NotRun), -1, res.Error, true
		}
	}
	if phase == hooks.PostPatch {
		if !e.retry(ctx, c, ps, list) {
			return
		}
	}
	if ctx.Err() != nil {
		return
	}
	ps.Done = true
	if rec, ok := e.o.Runner.(phaseRecorder); ok {
		var rs []hooks.Result
		for _, h := range ps.Hooks {
			rs = append(rs, hooks.Result{Phase: phase, Name: h.Name, Outcome: hooks.Outcome(h.Outcome), ExitCode: h.ExitCode, Attempt: h.Attempt})
		}
		rec.RecordPhase(phase, rs)
	}
	e.log.Info("phase done", "cycle", c.ID, "phase", name, "failed", ps.Failed)
	e.save()
}

// retry runs failed post-patch hooks again, with a doubling back-off, until
// each succeeded or used its retries. Attempts are persisted, so a restart
// continues the count instead of starting over.
func (e *Engine) retry(ctx context.Context, c *Cycle, ps *PhaseState, list []hooks.Hook) bool {
	set := e.o.Settings()
	byName := map[string]hooks.Hook{}
	for _, h := range list {
		byName[h.Name] = h
	}
	for {
		var again []int
		attempt := 0
		for i := range ps.Hooks {
			hs := &ps.Hooks[i]
			if _, ok := byName[hs.Name]; ok && hs.Finished && hs.Outcome != string(hooks.Success) &&
				hs.Outcome != string(hooks.Refusal) && hs.Attempt <= set.PostPatchRetries {
				again = append(again, i)
				attempt = max(attempt, hs.Attempt)
			}
		}
		if len(again) == 0 {
			ps.Failed = false
			for _, hs := range ps.Hooks {
				if hs.Outcome != string(hooks.Success) {
					ps.Failed = true
				}
			}
			return true
		}
		wait := set.PostPatchRetryBackoff << max(0, attempt-1)
		e.log.Info("retrying failed post-patch hooks", "cycle", c.ID, "hooks", len(again), "after", wait)
		select {
		case <-ctx.Done():
			return false
		case <-e.clock.After(wait):
		}
		for _, i := range again {
			hs := &ps.Hooks[i]
			hs.Finished = false
			if !e.runHook(ctx, c, ps, byName[hs.Name], hs) {
				return false
			}
		}
	}
}

// phaseRecorder is the hooks runner's per-phase metrics, fed with the final
// results once retries are over.
type phaseRecorder interface {
	RecordPhase(p hooks.Phase, results []hooks.Result)
}

// hookStarting persists a hook's attempt before it starts, so that a crash
// during it shows it unfinished and it runs again, one attempt higher. An
// earlier run that patchd was killed during must have ended first; false
// means patchd is stopping while it still runs.
func (e *Engine) hookStarting(ctx context.Context, c *Cycle, ps *PhaseState, h hooks.Hook, hs *HookState) bool {
	if hs.Process == nil && hs.Outcome == "running" && hs.Attempt > 0 {
		// Started, and patchd killed before the process was recorded?
		hs.Process = findStartedRun(c.ID, hs.Phase, hs.Attempt, h.Target, hs.Start, e.o.BootID())
	}
	if hs.Process != nil && !e.awaitEarlierRun(ctx, hs, h.Phase) {
		return false
	}
	hs.Process = nil
	hs.Attempt++
	hs.Outcome, hs.Start, hs.Error, hs.Finished = "running", e.clock.Now(), "", false
	e.saveStep(c, hs.Phase, ps, hs)
	name := hs.Phase + "/" + hs.Name
	e.running.Store(&name)
	return true
}

// runTracked runs one hook and records its process group as soon as it
// starts, so that a restart can wait for a run patchd was killed during.
func (e *Engine) runTracked(ctx context.Context, c *Cycle, ps *PhaseState, hs *HookState, h hooks.Hook, env hooks.Env) hooks.Result {
	hctx := hooks.WithStarted(ctx, func(pgid int) {
		hs.Process = processOf(pgid, e.o.BootID())
		e.saveProcess(c, hs.Phase, ps, hs)
	})
	return e.runOne(hctx, h, env)
}

// hookEnded records a hook's end (a refusal included) and persists it.
func (e *Engine) hookEnded(c *Cycle, ps *PhaseState, hs *HookState, res hooks.Result) {
	e.running.Store(nil)
	hs.Outcome, hs.ExitCode, hs.Duration = string(res.Outcome), res.ExitCode, res.Duration.Seconds()
	hs.StdoutTail, hs.StderrTail, hs.Error = res.StdoutTail, res.StderrTail, res.Error
	if !res.Start.IsZero() && res.Outcome != hooks.Refusal {
		hs.Start = res.Start
	}
	hs.Finished, hs.Process = true, nil
	if res.Outcome != hooks.Success {
		ps.Failed = true
	}
	if res.Outcome == hooks.Refusal {
		hs.ExitCode = -1
		e.log.Error("hook refused", "phase", hs.Phase, "hook", hs.Name, "reason", res.Error)
	} else {
		e.m.hookDone()
	}
	e.saveStep(c, hs.Phase, ps, hs)
}

// runOne runs one hook through the runner. The runner starts nothing for a
// refused hook; asking it counts the refusal in its metrics, and the
// refusal is recorded whatever it answers.
func (e *Engine) runOne(ctx context.Context, h hooks.Hook, env hooks.Env) hooks.Result {
	res := e.o.Runner.RunHook(ctx, h, env)
	res.Phase, res.Name = h.Phase, h.Name
	if h.State == hooks.Refused {
		res.Outcome, res.ExitCode, res.Interrupted = hooks.Refusal, -1, false
		if res.Error == "" {
			res.Error = h.Reason
		}
	}
	return res
}

// runHook runs one hook again (a post-patch retry); false means patchd is
// stopping and the hook did not finish.
func (e *Engine) runHook(ctx context.Context, c *Cycle, ps *PhaseState, h hooks.Hook, hs *HookState) bool {
	if h.State == hooks.Refused {
		e.hookEnded(c, ps, hs, e.runOne(ctx, h, e.env(c, h.Phase, max(hs.Attempt, 1))))
		return true
	}
	if !e.hookStarting(ctx, c, ps, h, hs) {
		return false
	}
	res := e.runTracked(ctx, c, ps, hs, h, e.env(c, h.Phase, hs.Attempt))
	if res.Interrupted {
		// The stop's signal ended it: it runs again after the restart. One
		// that exited on its own during the stop has finished (the policy of
		// hooks.RunHooks).
		e.running.Store(nil)
		e.log.Warn("hook cut short by the stop of patchd; it runs again after the restart", "phase", hs.Phase, "hook", h.Name, "attempt", hs.Attempt)
		return false
	}
	e.hookEnded(c, ps, hs, res)
	return true
}

func (e *Engine) env(c *Cycle, phase hooks.Phase, attempt int) hooks.Env {
	env := hooks.Env{
		Phase: phase, CycleID: c.ID, Trigger: c.Trigger, Document: c.Document.DocumentName,
		Operation: c.Document.Operation, InstanceID: e.instanceID(c), Region: c.Region, Attempt: attempt,
	}
	env.DocumentID, env.CommandID, env.AssociationID = documentIDs(c)
	if phase == hooks.PostPatch {
		env.Result, env.ResultReason = c.Result, c.ResultReason
		if env.Result == "" {
			env.Result = ResultUnknown
		}
		env.Rebooted = e.rebooted(c)
	}
	return env
}

// documentIDs are the agent's ids of the cycle's run: its document, or the
// gate's own while no patch command is adopted. A command id is given only
// for a command, an association id only for an association.
func documentIDs(c *Cycle) (documentID, commandID, associationID string) {
	d := c.Document
	if d.DocumentID == "" {
		d = Document{DocumentID: c.GateDocumentID}
	}
	commandID, associationID = ssm.SplitDocumentID(d.DocumentID)
	if d.CommandID != "" || d.AssociationID != "" {
		commandID, associationID = d.CommandID, d.AssociationID
	}
	return d.DocumentID, commandID, associationID
}

// StopExtra is how much longer the daemon's stop may take: enough for
// pre-reboot when the system is going down with a cycle open, else zero.
func (e *Engine) StopExtra() time.Duration {
	if e.decideStop() {
		return e.o.StopBound
	}
	return 0
}

func (e *Engine) decideStop() bool {
	e.stopOnce.Do(func() {
		snap := e.Status()
		c := snap.Current
		if c == nil || c.Ended || (c.Phases[PhasePreReboot] != nil && c.Phases[PhasePreReboot].Done) {
			return
		}
		if e.o.Shutdown == nil {
			return
		}
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
		defer cancel()
		e.stopRun = e.o.Shutdown.ShuttingDown(ctx)
	})
	return e.stopRun
}

// atStop runs pre-reboot, bounded, when patchd is stopped because the host
// is going down while a cycle is open.
func (e *Engine) atStop() {
	if !e.decideStop() {
		return
	}
	c := e.st.Current
	if c == nil {
		return
	}
	e.log.Warn("system is shutting down with a patch cycle open; running pre-reboot before stopping", "cycle", c.ID, "bound", e.o.StopBound)
	c.RebootRequested = true
	ctx, cancel := context.WithTimeout(context.Background(), e.o.StopBound)
	defer cancel()
	e.runPhase(ctx, c, hooks.PreReboot)
}
