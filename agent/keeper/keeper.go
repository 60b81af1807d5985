// Package keeper restarts amazon-ssm-agent when a restart is what it needs:
// after the instance's role changed (the agent would otherwise keep failing
// for up to half an hour), when its credentials are stuck although IMDS
// serves good ones, or on an operator's request. It never restarts the
// agent under a running document unless that has lasted agent.max_defer,
// and at most agent.max_restarts_per_hour times in any hour.
package keeper

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/jonboulle/clockwork"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/patchd/patchd/agent/agentlog"
	"github.com/patchd/patchd/agent/config"
	"github.com/patchd/patchd/agent/imds"
	"github.com/patchd/patchd/agent/ssm"
)

// Options configure a Keeper.
type Options struct {
	Config    config.Agent
	AgentData string // the agent's data dir, for current/
	StateDir  string // holds keeper.json
	Manager   Manager
	Clock     clockwork.Clock
	Logger    *slog.Logger
	// Registerer gets the keeper's metrics; nil registers nothing.
	Registerer prometheus.Registerer
	// RefreshCredentials asks the role watcher for a fresh look at IMDS when
	// an episode of credential errors begins (may be nil).
	RefreshCredentials func()
	// RecheckInterval is how often a deferred restart looks at current/
	// again (default 15s); ActiveInterval how often patchd_agent_up is
	// refreshed (default 30s); ActivePoll how often the agent is asked
	// whether it is up again after a restart (default 1s).
	RecheckInterval time.Duration
	ActiveInterval  time.Duration
	ActivePoll      time.Duration
	// ListCurrent lists documents in current/ (default ssm.ListFolder).
	ListCurrent func() ([]string, error)
}

// Outcome is what became of a restart request.
type Outcome struct {
	// Action: restarted, failed, deferred, refused, would_restart (restarts
	// are off), or pending (another restart was already waiting).
	Action  string `json:"action"`
	Message string `json:"message"`
}

// Episode is a run of credential errors in the agent's log; it ends at a
// successful connection or an agent start. One restart per episode.
type Episode struct {
	Since     time.Time     `json:"since"`
	Lines     int           `json:"lines"`
	Backoff   time.Duration `json:"backoff,omitempty"`
	Restarted bool          `json:"restarted"`
}

// Status is the keeper's view for `patchd agent status`.
type Status struct {
	Manager            string   `json:"manager"`
	Active             *bool    `json:"active,omitempty"`
	ActiveError        string   `json:"active_error,omitempty"`
	RestartEnabled     bool     `json:"restart_enabled"`
	AgentVersion       string   `json:"agent_version,omitempty"`
	LastRestart        *Record  `json:"last_restart,omitempty"`
	Pending            *Pending `json:"pending,omitempty"`
	RestartsLastHour   int      `json:"restarts_last_hour"`
	MaxRestartsPerHour int      `json:"max_restarts_per_hour"`
	CredentialsEpisode *Episode `json:"credentials_episode,omitempty"`
	ServesCredentials  bool     `json:"imds_serves_credentials"`
}

type waiter chan Outcome

// Keeper is the restart policy. Requests and events arrive from other
// goroutines; decisions and restarts happen in Run only.
type Keeper struct {
	opts  Options
	log   *slog.Logger
	clock clockwork.Clock
	path  string

	logCh chan agentlog.Event
	wake  chan struct{}

	up            prometheus.Gauge
	restarts      *prometheus.CounterVec
	failures      prometheus.Counter
	deferred      prometheus.Gauge
	deferredTotal prometheus.Counter
	refusedTotal  prometheus.Counter
	lastRestart   prometheus.Gauge
	dropped       prometheus.Counter

	mu     sync.Mutex
	cfg    config.Agent
	mgr    Manager
	state  State
	serves bool
	// servesAt is when IMDS last answered; a stuck-credentials restart
	// needs an answer from after the episode began.
	servesAt    time.Time
	lastRefresh time.Time
	// stuckStreak counts credentials_stuck restarts not followed by a
	// successful connection; each makes the next one wait longer.
	stuckStreak int
	lastStuck   time.Time
	stuckHeld   bool
	episode     *Episode
	waiters     []waiter
	active      *bool
	activeEr    string
}

// New builds a keeper and restores keeper.json (restart history, a pending
// restart, the last restart's time for its metric).
func New(opts Options) (*Keeper, error) {
	if opts.Clock == nil {
		opts.Clock = clockwork.NewRealClock()
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.Manager == nil {
		return nil, errors.New("keeper: no service manager")
	}
	if opts.RecheckInterval <= 0 {
		opts.RecheckInterval = 15 * time.Second
	}
	if opts.ActiveInterval <= 0 {
		opts.ActiveInterval = 30 * time.Second
	}
	if opts.ActivePoll <= 0 {
		opts.ActivePoll = time.Second
	}
	if opts.ListCurrent == nil {
		data := opts.AgentData
		opts.ListCurrent = func() ([]string, error) { return ssm.ListFolder(data, ssm.Current) }
	}
	k := &Keeper{
		opts:  opts,
		log:   opts.Logger,
		clock: opts.Clock,
		path:  filepath.Join(opts.StateDir, StateFileName),
		logCh: make(chan agentlog.Event, 256),
		wake:  make(chan struct{}, 1),
		cfg:   opts.Config,
		mgr:   opts.Manager,
		up: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "patchd_agent_up",
			Help: "Whether amazon-ssm-agent's service is active, as its service manager says.",
		}),
		restarts: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "patchd_agent_restarts_total",
			Help: "Restarts of amazon-ssm-agent attempted by patchd, by reason (role_changed, credentials_stuck, manual).",
		}, []string{"reason"}),
		failures: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "patchd_agent_restart_failures_total",
			Help: "Restarts whose command failed or after which the agent was not active within agent.restart_check_timeout.",
		}),
		deferred: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "patchd_agent_restart_deferred",
			Help: "1 while a restart of amazon-ssm-agent waits for documents to leave current/.",
		}),
		deferredTotal: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "patchd_agent_restarts_deferred_total",
			Help: "Restarts that had to wait for running documents.",
		}),
		refusedTotal: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "patchd_agent_restarts_refused_total",
			Help: "Restart requests held back by agent.max_restarts_per_hour.",
		}),
		lastRestart: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "patchd_agent_last_restart_timestamp_seconds",
			Help: "Time of patchd's last restart of amazon-ssm-agent (0: none recorded).",
		}),
		dropped: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "patchd_agent_keeper_events_dropped_total",
			Help: "Agent log events the keeper dropped because its queue was full.",
		}),
	}
	for _, r := range Reasons {
		k.restarts.WithLabelValues(string(r))
	}
	if opts.Registerer != nil {
		for _, c := range []prometheus.Collector{k.up, k.restarts, k.failures, k.deferred, k.deferredTotal, k.refusedTotal, k.lastRestart, k.dropped} {
			if err := opts.Registerer.Register(c); err != nil {
				return nil, fmt.Errorf("keeper: registering metrics: %w", err)
			}
		}
	}
	st, err := LoadState(k.path)
	if err != nil {
		k.log.Error("ignoring the saved keeper state", "err", err)
	}
	k.state = st
	if st.Last != nil {
		k.lastRestart.Set(float64(st.Last.Time.UnixNano()) / 1e9)
	}
	if st.Pending != nil {
		k.log.Info("a restart of amazon-ssm-agent was pending when patchd stopped; it is still due",
			"reason", st.Pending.Reason, "detail", st.Pending.Detail, "since", st.Pending.Since)
		if st.Pending.Deferred {
			k.deferred.Set(1)
		}
	}
	return k, nil
}

// SetConfig applies a reloaded configuration.
func (k *Keeper) SetConfig(cfg config.Agent) {
	k.mu.Lock()
	k.cfg = cfg
	k.mu.Unlock()
	k.poke()
}

// SetManager replaces the service manager (agent.service changed on reload).
func (k *Keeper) SetManager(m Manager) {
	k.mu.Lock()
	k.mgr = m
	k.mu.Unlock()
	k.poke()
}

func (k *Keeper) poke() {
	select {
	case k.wake <- struct{}{}:
	default:
	}
}

// Recheck asks for the pending restart to be reconsidered now (e.g. when a
// document left current/); it never blocks.
func (k *Keeper) Recheck() { k.poke() }

// LogEvent takes an agent log event. It only enqueues, never blocks: a
// full queue drops the event and counts it. The event's strings are the
// log tail's buffer, valid only during the call: what is enqueued is a
// clone, made after the filter so that the rest costs nothing.
func (k *Keeper) LogEvent(ev agentlog.Event) {
	if !relevant(ev) {
		return
	}
	select {
	case k.logCh <- ev.Clone():
	default:
		k.dropped.Inc()
	}
}

// stuckBackoff is the gap before a second credentials_stuck restart when
// the first did not help (no successful connection since); it doubles for
// each further one, up to an hour. A restart makes the agent try at once,
// which only helps if something changed since its last try, such as a
// policy edit that IMDS cannot show.
const stuckBackoff = 10 * time.Minute

// credentialsOK are the agent's lines for a working connection
// (docs/agent-formats.md, "Marker messages").
var credentialsOK = []string{
	"Successfully connected with instance profile role credentials",
	"Credentials ready",
}

func isCredentialsOK(msg string) bool {
	for _, s := range credentialsOK {
		if strings.Contains(msg, s) {
			return true
		}
	}
	return false
}

func relevant(ev agentlog.Event) bool {
	return ev.Kind == agentlog.CredentialsError || ev.Kind == agentlog.AgentStart || isCredentialsOK(ev.Message)
}

// Observe takes an answer of the role watcher. A role change becomes a
// pending restart, written to keeper.json before this returns (the watcher
// records the new identity only afterwards).
func (k *Keeper) Observe(obs imds.Observation) {
	k.mu.Lock()
	// An unknown answer is not "serving": no stuck-credentials restart on a
	// guess.
	k.serves = obs.Known && obs.ServesCredentials
	if obs.Known {
		k.servesAt = k.clock.Now()
	}
	k.mu.Unlock()
	if obs.Changed {
		k.request(RoleChanged, obs.Reason+"; now "+obs.Identity.String(), nil)
		return
	}
	k.poke()
}

// Request asks for a restart (manual: `patchd agent restart`) under the same
// policy. The channel gets the first decision about it.
func (k *Keeper) Request(reason Reason, detail string) <-chan Outcome {
	w := make(waiter, 1)
	k.request(reason, detail, w)
	return w
}

func (k *Keeper) request(reason Reason, detail string, w waiter) {
	k.mu.Lock()
	now := k.clock.Now()
	if p := k.state.Pending; p != nil {
		k.log.Info("restart of amazon-ssm-agent requested while one is pending; they are one restart",
			"reason", reason, "detail", detail, "pending_reason", p.Reason, "pending_since", p.Since)
		if w != nil {
			w <- Outcome{Action: "pending", Message: fmt.Sprintf("a restart (%s) is already pending since %s", p.Reason, p.Since.Format(time.RFC3339))}
		}
		k.mu.Unlock()
		k.poke()
		return
	}
	k.state.Pending = &Pending{Reason: reason, Detail: detail, Since: now}
	if w != nil {
		k.waiters = append(k.waiters, w)
	}
	k.saveLocked()
	k.mu.Unlock()
	k.log.Info("restart of amazon-ssm-agent requested", "reason", reason, "detail", detail)
	k.poke()
}

func (k *Keeper) saveLocked() {
	if err := SaveState(k.path, k.state); err != nil {
		k.log.Error("cannot save the keeper state; restart history and a pending restart may be lost at a crash", "err", err)
	}
}

func (k *Keeper) notifyLocked(o Outcome) {
	for _, w := range k.waiters {
		w <- o
	}
	k.waiters = nil
}

// Status reports the keeper's state.
func (k *Keeper) Status() Status {
	k.mu.Lock()
	defer k.mu.Unlock()
	s := Status{
		Manager:            k.mgr.Name(),
		Active:             k.active,
		ActiveError:        k.activeEr,
		RestartEnabled:     k.cfg.Restart,
		AgentVersion:       k.state.AgentVersion,
		RestartsLastHour:   len(within(k.state.Restarts, k.clock.Now().Add(-time.Hour))),
		MaxRestartsPerHour: k.cfg.MaxRestartsPerHour,
		ServesCredentials:  k.serves,
	}
	if k.state.Last != nil {
		r := *k.state.Last
		s.LastRestart = &r
	}
	if k.state.Pending != nil {
		p := *k.state.Pending
		s.Pending = &p
	}
	if k.episode != nil {
		e := *k.episode
		s.CredentialsEpisode = &e
	}
	return s
}

// Run makes every decision until ctx is done.
func (k *Keeper) Run(ctx context.Context) error {
	recheck := k.clock.NewTicker(k.opts.RecheckInterval)
	defer recheck.Stop()
	activeTick := k.clock.NewTicker(k.opts.ActiveInterval)
	defer activeTick.Stop()
	k.refreshActive(ctx)
	k.evaluate(ctx)
	for {
		select {
		case <-ctx.Done():
			k.mu.Lock()
			k.notifyLocked(Outcome{Action: "pending", Message: "patchd is stopping; the restart stays pending in keeper.json"})
			k.mu.Unlock()
			return nil
		case ev := <-k.logCh:
			k.handleLog(ev)
		case <-k.wake:
		case <-recheck.Chan():
		case <-activeTick.Chan():
			k.refreshActive(ctx)
		}
		k.checkStuck()
		k.evaluate(ctx)
	}
}

func (k *Keeper) handleLog(ev agentlog.Event) {
	k.mu.Lock()
	defer k.mu.Unlock()
	switch {
	case ev.Kind == agentlog.AgentStart || isCredentialsOK(ev.Message):
		if isCredentialsOK(ev.Message) {
			k.stuckStreak = 0
		}
		if ev.AgentVersion != "" && ev.AgentVersion != k.state.AgentVersion {
			k.state.AgentVersion = ev.AgentVersion
			k.saveLocked()
		}
		if k.episode != nil {
			k.log.Info("agent credentials episode over", "by", ev.Message, "lines", k.episode.Lines, "since", k.episode.Since)
			k.episode = nil
		}
	case ev.Kind == agentlog.CredentialsError:
		if last := k.state.Last; last != nil && !ev.Time.IsZero() && !ev.Time.After(last.Time) {
			// Logged before the agent's last restart by patchd, which
			// answered it: it says nothing of the agent now. After a
			// crash of patchd the log tail hands out its last second
			// again, and such a line must not restart the agent twice.
			return
		}
		if k.episode == nil {
			k.episode = &Episode{Since: k.clock.Now()}
			k.log.Info("agent reports credential errors", "message", ev.Message)
			if k.opts.RefreshCredentials != nil {
				k.opts.RefreshCredentials()
			}
		}
		k.episode.Lines++
		if ev.Backoff > 0 {
			k.episode.Backoff = ev.Backoff
		}
	}
}

// checkStuck turns an open episode into a restart once IMDS serves
// credentials: the agent is then failing on credentials it could have.
func (k *Keeper) checkStuck() {
	k.mu.Lock()
	e := k.episode
	if e == nil || e.Restarted || !k.serves || k.servesAt.Before(e.Since) {
		k.mu.Unlock()
		return
	}
	if k.stuckStreak > 0 {
		gap := min(stuckBackoff<<(k.stuckStreak-1), time.Hour)
		if next := k.lastStuck.Add(gap); k.clock.Now().Before(next) {
			if !k.stuckHeld {
				k.stuckHeld = true
				k.log.Warn("the agent still fails on credentials after a restart for it; the next restart for this waits",
					"restarts_without_success", k.stuckStreak, "next", next)
			}
			k.mu.Unlock()
			return
		}
	}
	k.stuckHeld = false
	k.stuckStreak++
	k.lastStuck = k.clock.Now()
	e.Restarted = true
	detail := fmt.Sprintf("%d credential error lines since %s while IMDS serves credentials", e.Lines, e.Since.Format(time.RFC3339))
	if e.Backoff > 0 {
		detail += fmt.Sprintf("; the agent would wait %s before retrying", e.Backoff)
	}
	k.mu.Unlock()
	k.request(CredentialsStuck, detail, nil)
}

func (k *Keeper) refreshActive(ctx context.Context) {
	k.mu.Lock()
	mgr, timeout := k.mgr, k.cfg.RestartCheckTimeout
	k.mu.Unlock()
	actx, cancel := context.WithTimeout(ctx, min(timeout, 30*time.Second))
	defer cancel()
	ok, err := mgr.Active(actx)
	k.mu.Lock()
	defer k.mu.Unlock()
	if err != nil {
		if k.activeEr == "" {
			k.log.Warn("cannot tell whether amazon-ssm-agent is active", "manager", mgr.Name(), "err", err)
		}
		k.active, k.activeEr = nil, err.Error()
		k.up.Set(0)
		return
	}
	k.active, k.activeEr = &ok, ""
	if ok {
		k.up.Set(1)
	} else {
		k.up.Set(0)
	}
}

// evaluate decides about the pending restart: drop it (restarts off), hold
// it (hourly limit, running documents) or do it.
func (k *Keeper) evaluate(ctx context.Context) {
	k.mu.Lock()
	p := k.state.Pending
	if p == nil || ctx.Err() != nil {
		k.mu.Unlock()
		return
	}
	cfg := k.cfg
	now := k.clock.Now()
	if !cfg.Restart {
		k.log.Warn("would restart amazon-ssm-agent, but agent.restart is off", "reason", p.Reason, "detail", p.Detail)
		k.state.Pending = nil
		k.deferred.Set(0)
		k.saveLocked()
		k.notifyLocked(Outcome{Action: "would_restart", Message: fmt.Sprintf("would restart (%s: %s), but agent.restart is off", p.Reason, p.Detail)})
		k.mu.Unlock()
		return
	}
	if p.Reason != Manual && !k.serves {
		// A new role's credentials can lag its appearance in iam/info; a
		// restart before IMDS serves them would send the agent into its
		// long back-off again.
		if !p.WaitingCredentials {
			p.WaitingCredentials = true
			k.log.Info("restart of amazon-ssm-agent waits until IMDS serves credentials for the role", "reason", p.Reason, "detail", p.Detail)
			k.saveLocked()
		}
		refresh := k.opts.RefreshCredentials != nil && k.clock.Since(k.lastRefresh) >= k.opts.RecheckInterval
		if refresh {
			k.lastRefresh = now
		}
		k.mu.Unlock()
		if refresh {
			k.opts.RefreshCredentials()
		}
		return
	}
	recent := within(k.state.Restarts, now.Add(-time.Hour))
	if len(recent) >= cfg.MaxRestartsPerHour {
		next := recent[0].Time.Add(time.Hour)
		if !p.Refused {
			p.Refused = true
			k.refusedTotal.Inc()
			k.log.Warn("not restarting amazon-ssm-agent now: agent.max_restarts_per_hour reached; the restart waits",
				"reason", p.Reason, "detail", p.Detail, "restarts_last_hour", len(recent), "limit", cfg.MaxRestartsPerHour, "next_allowed", next)
			k.saveLocked()
			k.notifyLocked(Outcome{Action: "refused", Message: fmt.Sprintf("%d restarts in the last hour (limit %d); the restart waits until %s", len(recent), cfg.MaxRestartsPerHour, next.Format(time.RFC3339))})
		}
		k.mu.Unlock()
		return
	}
	k.mu.Unlock()

	files, err := k.opts.ListCurrent()
	busy := len(files) > 0
	why := fmt.Sprintf("%d document(s) in current/: %s", len(files), strings.Join(base(files), ", "))
	if err != nil {
		// Unreadable: assume a document may be running.
		busy, why = true, "cannot list current/: "+err.Error()
	}

	k.mu.Lock()
	if busy {
		// max_defer counts from the first deferral, not from the request:
		// time spent waiting for credentials or the hourly limit must not
		// shorten the wait for a running document.
		if !p.Deferred {
			p.Deferred, p.DeferredSince = true, now
			k.deferred.Set(1)
			k.deferredTotal.Inc()
			k.log.Info("deferring the restart of amazon-ssm-agent while a document may be running",
				"reason", p.Reason, "detail", p.Detail, "why", why, "max_defer", cfg.MaxDefer, "until", now.Add(cfg.MaxDefer))
			k.saveLocked()
			k.notifyLocked(Outcome{Action: "deferred", Message: fmt.Sprintf("deferred: %s; restarting when they leave, at the latest at %s", why, now.Add(cfg.MaxDefer).Format(time.RFC3339))})
		}
		if now.Sub(p.DeferredSince) < cfg.MaxDefer {
			k.mu.Unlock()
			return
		}
		k.log.Warn("restarting amazon-ssm-agent although a document may still be running: agent.max_defer has passed",
			"reason", p.Reason, "why", why, "waited", now.Sub(p.DeferredSince).Round(time.Second), "max_defer", cfg.MaxDefer)
	} else if p.Deferred {
		k.log.Info("documents left current/; the deferred restart goes ahead", "reason", p.Reason, "waited", now.Sub(p.DeferredSince).Round(time.Second))
	}
	rec := Record{Time: now, Reason: p.Reason, Detail: p.Detail}
	k.state.Restarts = append(recent, rec)
	k.state.Last = &rec
	k.state.Pending = nil
	k.deferred.Set(0)
	// Any restart answers the credential errors seen so far: without this
	// a role-change restart would be followed by a stuck-credentials one
	// before the agent's start line closes the episode.
	if k.episode != nil {
		k.episode.Restarted = true
	}
	// Written before the restart: a crash during it still counts.
	k.saveLocked()
	k.restarts.WithLabelValues(string(rec.Reason)).Inc()
	k.lastRestart.Set(float64(now.UnixNano()) / 1e9)
	mgr := k.mgr
	// Requests made during the restart are a new pending restart with
	// their own waiters; only these get this outcome.
	ws := k.waiters
	k.waiters = nil
	k.mu.Unlock()

	out := k.restart(ctx, mgr, cfg, rec)
	for _, w := range ws {
		w <- out
	}
}

func (k *Keeper) restart(ctx context.Context, mgr Manager, cfg config.Agent, rec Record) Outcome {
	k.log.Warn("restarting amazon-ssm-agent", "reason", rec.Reason, "detail", rec.Detail, "manager", mgr.Name())
	start := k.clock.Now()
	rctx, cancel := clockwork.WithTimeout(ctx, k.clock, cfg.RestartCheckTimeout)
	defer cancel()
	err := mgr.Restart(rctx)
	if err == nil {
		err = k.waitActive(rctx, mgr)
	}
	k.mu.Lock()
	defer k.mu.Unlock()
	last := k.state.Last
	if last != nil && last.Time.Equal(rec.Time) {
		last.OK = err == nil
		if err != nil {
			last.Error = err.Error()
		}
		for i := range k.state.Restarts {
			if k.state.Restarts[i].Time.Equal(rec.Time) {
				k.state.Restarts[i] = *last
			}
		}
		k.saveLocked()
	}
	if err != nil {
		k.failures.Inc()
		k.up.Set(0)
		k.log.Error("restart of amazon-ssm-agent failed", "reason", rec.Reason, "manager", mgr.Name(), "err", err)
		return Outcome{Action: "failed", Message: fmt.Sprintf("restart (%s) through %s failed: %v", rec.Reason, mgr.Name(), err)}
	}
	ok := true
	k.active, k.activeEr = &ok, ""
	k.up.Set(1)
	took := k.clock.Since(start).Round(time.Millisecond)
	k.log.Info("amazon-ssm-agent restarted and active", "reason", rec.Reason, "manager", mgr.Name(), "took", took)
	return Outcome{Action: "restarted", Message: fmt.Sprintf("restarted (%s) through %s; active after %s", rec.Reason, mgr.Name(), took)}
}

// waitActive asks the manager until the agent is active or ctx ends.
func (k *Keeper) waitActive(ctx context.Context, mgr Manager) error {
	var lastErr error
	for {
		ok, err := mgr.Active(ctx)
		if err == nil && ok {
			return nil
		}
		lastErr = err
		select {
		case <-ctx.Done():
			if lastErr != nil {
				return fmt.Errorf("agent not active after the restart: %w", lastErr)
			}
			return errors.New("agent not active after the restart within agent.restart_check_timeout")
		case <-k.clock.After(k.opts.ActivePoll):
		}
	}
}

func base(paths []string) []string {
	out := make([]string, len(paths))
	for i, p := range paths {
		out[i] = filepath.Base(p)
	}
	return out
}
