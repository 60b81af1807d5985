package compliance

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"path/filepath"
	"sync"
	"time"

	"github.com/jonboulle/clockwork"

	"github.com/patchd/patchd/agent/ledger"
	"github.com/patchd/patchd/agent/uploads"
)

// Modes of ssm.report.
const (
	ModeAuto = "auto"
	ModeOn   = "on"
	ModeOff  = "off"
)

// OpenCycle is the open cycle as the reporter needs it.
type OpenCycle struct {
	ID        string
	CommandID string
	Opened    time.Time
}

// Options build a Reporter.
type Options struct {
	StateDir   string
	LedgerPath string
	// Mode is auto (report when an instance id and credentials are found;
	// quiet otherwise), on (a missing one is a counted failure) or off.
	Mode string
	// InstanceID finds the instance id ("" when unknown).
	InstanceID func(ctx context.Context) string
	// Connect finds credentials and region; called until it succeeds.
	Connect func(ctx context.Context) (Sender, error)
	// Severity of a phase's hook items, and ("cycle") of the cycle's own.
	Severity Severities
	// Open returns the open cycle, if any; FailsafeAge is how long it may
	// stay open before monitoring-restored turns NON_COMPLIANT.
	Open        func() (OpenCycle, bool)
	FailsafeAge func() time.Duration
	// FirstRetry and MaxRetry bound the backoff between tries (5 s, and
	// ssm.retry_max).
	FirstRetry, MaxRetry time.Duration
	// AttemptTimeout bounds one call (a hung endpoint).
	AttemptTimeout time.Duration
	// CheckInterval is how often an open cycle is checked for the failsafe.
	CheckInterval time.Duration
	Clock         clockwork.Clock
	Logger        *slog.Logger
	Uploads       *uploads.Tracker
	// Attempted, when set, is told the outcome of every try (nil: sent);
	// tests wait on it instead of on time.
	Attempted func(err error)
}

// Reporter is the actor that empties the outbox into Systems Manager.
type Reporter struct {
	o      Options
	log    *slog.Logger
	clock  clockwork.Clock
	path   string
	notify chan struct{}

	mu     sync.Mutex
	closed []ledger.Entry // handed over by the cycle, not yet in the outbox

	// Run's goroutine only.
	box       *outbox
	sender    Sender
	instance  string
	tries     int
	next      time.Time
	paused    bool   // AccessDenied or an invalid report: wait for a new one
	quiet     string // the last "not reporting" reason logged (auto mode)
	overdueID string // the open cycle already reported as overdue
}

// New builds a Reporter.
func New(o Options) *Reporter {
	if o.Clock == nil {
		o.Clock = clockwork.NewRealClock()
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.FirstRetry <= 0 {
		o.FirstRetry = 5 * time.Second
	}
	if o.MaxRetry < o.FirstRetry {
		o.MaxRetry = 15 * time.Minute
	}
	if o.AttemptTimeout <= 0 {
		o.AttemptTimeout = 30 * time.Second
	}
	if o.CheckInterval <= 0 {
		o.CheckInterval = time.Minute
	}
	return &Reporter{o: o, log: o.Logger, clock: o.Clock, path: filepath.Join(o.StateDir, OutboxFile), notify: make(chan struct{}, 1)}
}

// CycleClosed queues the report of a closed cycle; it never blocks.
func (r *Reporter) CycleClosed(e ledger.Entry) {
	r.mu.Lock()
	r.closed = append(r.closed, e)
	r.mu.Unlock()
	select {
	case r.notify <- struct{}{}:
	default:
	}
}

// Run sends what the outbox holds, retrying with a capped backoff.
func (r *Reporter) Run(ctx context.Context) error {
	if r.o.Mode == ModeOff {
		<-ctx.Done()
		return nil
	}
	r.start()
	for {
		r.takeClosed()
		r.checkOverdue()
		if r.box.Pending != nil && !r.paused && !r.clock.Now().Before(r.next) {
			r.attempt(ctx)
			continue
		}
		wait := r.o.CheckInterval
		if r.box.Pending != nil && !r.paused {
			if d := r.next.Sub(r.clock.Now()); d < wait {
				wait = d
			}
		}
		t := r.clock.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return nil
		case <-r.notify:
		case <-t.Chan():
		}
		t.Stop()
	}
}

// start loads the outbox; when it lost the last cycle's report (broken,
// removed) or never had it, the report is rebuilt from the ledger.
func (r *Reporter) start() {
	box, _, err := loadOutbox(r.path, r.clock.Now())
	if err != nil {
		r.log.Error("compliance outbox unreadable", "err", err)
	}
	r.box = box
	last, _, err := ledger.Read(r.o.LedgerPath, 1)
	if err != nil {
		r.log.Warn("cannot read the ledger for the compliance report", "err", err)
	}
	if len(last) == 1 && box.Pending == nil && box.DeliveredCycle != last[0].CycleID {
		r.enqueue(Build(&last[0], nil, r.o.Severity, r.clock.Now()))
	}
	r.publish()
}

func (r *Reporter) takeClosed() {
	r.mu.Lock()
	es := r.closed
	r.closed = nil
	r.mu.Unlock()
	for i := range es {
		r.overdueID = ""
		r.enqueue(Build(&es[i], nil, r.o.Severity, r.clock.Now()))
	}
}

// checkOverdue reports monitoring-restored NON_COMPLIANT once per cycle
// that stays open past the failsafe.
func (r *Reporter) checkOverdue() {
	if r.o.Open == nil || r.o.FailsafeAge == nil {
		return
	}
	c, ok := r.o.Open()
	if !ok || c.ID == r.overdueID {
		return
	}
	since := c.Opened.Add(r.o.FailsafeAge())
	if r.clock.Now().Before(since) {
		return
	}
	r.overdueID = c.ID
	var last *ledger.Entry
	if es, _, err := ledger.Read(r.o.LedgerPath, 1); err == nil && len(es) == 1 {
		last = &es[0]
	}
	r.log.Warn("patch cycle open longer than the failsafe; reporting monitoring-restored NON_COMPLIANT", "cycle", c.ID, "opened", c.Opened)
	r.enqueue(Build(last, &Overdue{CycleID: c.ID, CommandID: c.CommandID, Opened: c.Opened, Since: since}, r.o.Severity, r.clock.Now()))
}

// enqueue replaces what waits with rep and persists it before any send.
func (r *Reporter) enqueue(rep Report) {
	r.box.Pending = &rep
	r.tries, r.next, r.paused = 0, time.Time{}, false
	if err := r.box.save(r.path); err != nil {
		r.log.Error("cannot write the compliance outbox; the report is kept in memory until sent", "err", err)
	}
	r.publish()
}

func (r *Reporter) publish() {
	if r.o.Uploads != nil {
		r.o.Uploads.SetPending(uploads.KindCompliance, r.box.size())
	}
}

// attempt tries to send the pending report once.
func (r *Reporter) attempt(ctx context.Context) {
	err := r.try(ctx)
	if r.o.Attempted != nil && ctx.Err() == nil {
		r.o.Attempted(err)
	}
}

func (r *Reporter) try(ctx context.Context) error {
	rep := *r.box.Pending
	now := r.clock.Now()
	if r.instance == "" && r.o.InstanceID != nil {
		r.instance = r.o.InstanceID(ctx)
	}
	if r.instance == "" {
		err := errors.New("no instance id: amazon-ssm-agent has not registered the instance and IMDS gives none")
		r.notReady(uploads.ReasonCredentials, err)
		return err
	}
	if r.sender == nil {
		s, err := r.o.Connect(ctx)
		if err != nil {
			r.notReady(uploads.ReasonCredentials, err)
			return err
		}
		r.sender = s
		r.log.Info("compliance report on", "instance", r.instance)
	}
	actx, cancel := context.WithTimeout(ctx, r.o.AttemptTimeout)
	err := r.sender.Put(actx, r.instance, rep)
	cancel()
	if ctx.Err() != nil {
		return ctx.Err() // stopping: the report stays in the outbox
	}
	if err == nil {
		r.box.DeliveredCycle, r.box.DeliveredHash, r.box.DeliveredAt = rep.CycleID, rep.Hash(), now
		r.box.Pending = nil
		r.tries = 0
		if err := r.box.save(r.path); err != nil {
			r.log.Warn("cannot write the compliance outbox after a delivery; the report may be sent again", "err", err)
		}
		r.quiet = ""
		r.log.Info("compliance report delivered", "cycle", rep.CycleID, "items", len(rep.Items))
		if r.o.Uploads != nil {
			r.o.Uploads.Success(uploads.KindCompliance, now)
		}
		r.publish()
		return nil
	}
	reason, retry := Classify(err)
	if r.o.Uploads != nil {
		r.o.Uploads.Failure(uploads.KindCompliance, reason, err, now)
	}
	switch {
	case reason == uploads.ReasonAccessDenied:
		// Said once: retrying cannot help until someone changes the role.
		r.paused = true
		r.log.Error("Systems Manager refused the compliance report: the instance role needs ssm:PutComplianceItems on this managed instance (see docs/fleet-ssm.md); not retried until the next cycle or a restart",
			"instance", r.instance, "err", err)
	case !retry:
		r.paused = true
		r.log.Error("Systems Manager refused the compliance report as invalid; not retried until the next cycle", "err", err)
	default:
		r.backoff()
		r.log.Warn("compliance report not delivered; will retry", "reason", reason, "try", r.tries, "retry_in", r.next.Sub(now).Round(time.Second), "err", err)
	}
	return err
}

// notReady handles missing credentials or instance id: in auto mode that
// means "not on EC2 / no role": logged once at info, not counted; in on mode
// it is a failure like any other.
func (r *Reporter) notReady(reason string, err error) {
	r.backoff()
	if r.o.Mode == ModeAuto {
		what := err.Error()
		var m *missing
		if errors.As(err, &m) {
			what = m.what
		}
		if what != r.quiet {
			r.quiet = what
			r.log.Info("compliance report waits: ssm.report is auto and "+err.Error(), "retry_in", r.next.Sub(r.clock.Now()).Round(time.Second))
		}
		return
	}
	if r.o.Uploads != nil {
		r.o.Uploads.Failure(uploads.KindCompliance, reason, err, r.clock.Now())
	}
	r.log.Warn("compliance report not delivered: "+err.Error(), "reason", reason, "retry_in", r.next.Sub(r.clock.Now()).Round(time.Second))
}

// backoff doubles the wait from FirstRetry up to MaxRetry, less up to a
// fifth at random so that a fleet throttled together does not retry in step.
func (r *Reporter) backoff() {
	d := r.o.FirstRetry << min(r.tries, 30)
	if d <= 0 || d > r.o.MaxRetry {
		d = r.o.MaxRetry
	}
	d -= time.Duration(rand.Int64N(int64(d)/5 + 1))
	r.tries++
	r.next = r.clock.Now().Add(d)
}

// String is for logs.
func (r *Reporter) String() string { return fmt.Sprintf("compliance reporter (%s)", r.o.Mode) }
