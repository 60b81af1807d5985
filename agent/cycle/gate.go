package cycle

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	"github.com/patchd/patchd/agent/ledger"
)

// Gate asks the actor to run (or report) a phase and waits for the answer.
func (e *Engine) Gate(ctx context.Context, req GateRequest) GateReply {
	if req.Phase != PhasePrePatch && req.Phase != PhasePostPatch {
		return GateReply{Error: fmt.Sprintf("unknown gate phase %q: use pre-patch or post-patch", req.Phase)}
	}
	if req.Result != "" && !validResult(req.Result) {
		return GateReply{Error: fmt.Sprintf("unknown result %q: use one of %v", req.Result, Results)}
	}
	reply := make(chan GateReply, 1)
	e.enqueue(gateMsg{req: req, reply: reply})
	select {
	case r := <-reply:
		return r
	case <-ctx.Done():
		return GateReply{Error: "gate request abandoned: " + ctx.Err().Error()}
	}
}

func validResult(r string) bool {
	for _, v := range Results {
		if v == r {
			return true
		}
	}
	return false
}

func (e *Engine) onGate(ctx context.Context, req GateRequest) GateReply {
	c := e.st.Current
	switch req.Phase {
	case PhasePrePatch:
		if c == nil {
			c = e.open(ctx, TriggerGate, Document{})
			c.GateDocumentID, c.WaitForPatch, c.Region = req.DocumentID, req.WaitForPatch, req.Region
		} else {
			// Merge with the open cycle: its pre-patch is the answer; hooks
			// never run twice for one patch run.
			if c.GateDocumentID == "" && req.DocumentID != "" {
				c.GateDocumentID = req.DocumentID
			}
			if req.WaitForPatch {
				c.WaitForPatch = true
			}
			if c.Region == "" {
				c.Region = req.Region
			}
			e.save()
			e.log.Info("gate joins the open cycle", "cycle", c.ID, "trigger", c.Trigger, "document", c.Document.DocumentID)
		}
		e.advance(ctx)
		return e.phaseReply(c, PhasePrePatch)
	default:
		if c == nil {
			if l := e.st.Last; l != nil {
				ok := true
				var hs []ledger.HookRun
				for _, h := range l.Hooks {
					if h.Phase == PhasePostPatch {
						hs = append(hs, h)
						ok = ok && h.Outcome == "success"
					}
				}
				return GateReply{OK: ok, CycleID: l.CycleID, Phase: PhasePostPatch, Hooks: hs,
					Message: fmt.Sprintf("no open cycle; post-patch of the last cycle already ran at %s", l.Closed.Format(time.RFC3339))}
			}
			return GateReply{Error: "no open patch cycle and none finished: nothing to close (run patchd gate pre-patch first)"}
		}
		if !c.Ended {
			c.Ended, c.EndAt = true, e.clock.Now()
			c.Result = req.Result
			if c.Result == "" {
				c.Result = resultOf(c.Document.Status, c.Document.Steps, false)
			}
			e.log.Info("gate closes the cycle", "cycle", c.ID, "result", c.Result)
			e.save()
		}
		e.advance(ctx)
		return e.phaseReply(c, PhasePostPatch)
	}
}

func (e *Engine) phaseReply(c *Cycle, phase string) GateReply {
	ps := c.Phases[phase]
	r := GateReply{CycleID: c.ID, Phase: phase}
	if ps == nil || !ps.Done {
		r.Error = "patchd is stopping; the phase will finish after its restart"
		r.Unavailable = true
		return r
	}
	for _, h := range ps.Hooks {
		r.Hooks = append(r.Hooks, h.HookRun)
	}
	r.OK = !ps.Failed
	switch {
	case ps.Error != "":
		r.Message = ps.Error
	case !r.OK:
		for _, h := range ps.Hooks {
			if h.Outcome != "success" {
				r.Message = fmt.Sprintf("hook %s/%s %s (exit %d) %s", phase, h.Name, h.Outcome, h.ExitCode, h.Error)
				break
			}
		}
	}
	return r
}

// Status returns a copy of the state as last written.
func (e *Engine) Status() Status {
	var st State
	if p := e.snap.Load(); p != nil {
		_ = json.Unmarshal(*p, &st)
	}
	s := Status{Current: st.Current, Queue: st.Queue, Last: st.Last}
	if r := e.running.Load(); r != nil {
		s.Running = *r
	}
	return s
}
