package keeper

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jonboulle/clockwork"
	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/patchd/patchd/agent/agentlog"
	"github.com/patchd/patchd/agent/config"
	"github.com/patchd/patchd/agent/imds"
)

// recordingManager is a service manager that records restarts.
type recordingManager struct {
	mu       sync.Mutex
	restarts int
	fail     error
	inactive bool
	done     chan struct{} // gets one value per restart
	hold     chan struct{} // when set, each Restart waits for a value
}

func newRecordingManager() *recordingManager {
	return &recordingManager{done: make(chan struct{}, 100)}
}

func (m *recordingManager) Name() string { return "recording" }

func (m *recordingManager) Restart(context.Context) error {
	m.mu.Lock()
	m.restarts++
	err := m.fail
	hold := m.hold
	m.mu.Unlock()
	m.done <- struct{}{}
	if hold != nil {
		<-hold
	}
	return err
}

func (m *recordingManager) Active(context.Context) (bool, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	return !m.inactive, nil
}

func (m *recordingManager) count() int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.restarts
}

type harness struct {
	t         *testing.T
	k         *Keeper
	mgr       *recordingManager
	clock     *clockwork.FakeClock
	state     string
	agentData string
	reg       *prometheus.Registry
}

func testConfig() config.Agent {
	c := config.Default().Agent
	c.RestartCheckTimeout = 2 * time.Second
	return c
}

func newHarness(t *testing.T, cfg config.Agent) *harness {
	t.Helper()
	h := &harness{
		t:         t,
		mgr:       newRecordingManager(),
		clock:     clockwork.NewFakeClockAt(time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)),
		state:     t.TempDir(),
		agentData: t.TempDir(),
	}
	h.reopen(cfg)
	return h
}

// reopen builds a new keeper on the same state dir, as after a patchd restart.
func (h *harness) reopen(cfg config.Agent) {
	h.t.Helper()
	h.reg = prometheus.NewRegistry()
	k, err := New(Options{
		Config: cfg, AgentData: h.agentData, StateDir: h.state, Manager: h.mgr,
		Clock: h.clock, Registerer: h.reg, ActivePoll: 10 * time.Millisecond,
	})
	if err != nil {
		h.t.Fatal(err)
	}
	h.k = k
}

// step runs what one turn of Run does, synchronously.
func (h *harness) step() {
	for {
		select {
		case ev := <-h.k.logCh:
			h.k.handleLog(ev)
			continue
		default:
		}
		break
	}
	h.k.checkStuck()
	h.k.evaluate(context.Background())
}

func (h *harness) roleChange() {
	h.k.Observe(imds.Observation{Known: true, Changed: true, ServesCredentials: true, Reason: "role changed from a to b",
		Identity: imds.Identity{InstanceProfileArn: "arn:b", InstanceProfileID: "AIPB", Role: "b"}})
}

func (h *harness) imdsServes(serves bool) {
	h.k.Observe(imds.Observation{Known: true, ServesCredentials: serves,
		Identity: imds.Identity{InstanceProfileArn: "arn:b", InstanceProfileID: "AIPB", Role: "b"}})
}

func (h *harness) currentFile(name string) string {
	h.t.Helper()
	dir := filepath.Join(h.agentData, "i-0123456789abcdef0", "document", "state", "current")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		h.t.Fatal(err)
	}
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, []byte("{}"), 0o600); err != nil {
		h.t.Fatal(err)
	}
	return p
}

func (h *harness) wantRestarts(n int) {
	h.t.Helper()
	if got := h.mgr.count(); got != n {
		h.t.Fatalf("%d restarts, want %d", got, n)
	}
}

func (h *harness) metric(name string, labels ...string) float64 {
	h.t.Helper()
	mfs, err := h.reg.Gather()
	if err != nil {
		h.t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.Metric {
			if matches(m, labels) {
				switch {
				case m.Counter != nil:
					return m.Counter.GetValue()
				case m.Gauge != nil:
					return m.Gauge.GetValue()
				}
			}
		}
	}
	h.t.Fatalf("no metric %s%v", name, labels)
	return 0
}

func matches(m *dto.Metric, labels []string) bool {
	for i := 0; i+1 < len(labels); i += 2 {
		found := false
		for _, l := range m.Label {
			if l.GetName() == labels[i] && l.GetValue() == labels[i+1] {
				found = true
			}
		}
		if !found {
			return false
		}
	}
	return true
}

func TestRoleChangeRestartsOnce(t *testing.T) {
	h := newHarness(t, testConfig())
	h.roleChange()
	h.step()
	h.wantRestarts(1)
	for range 3 {
		h.imdsServes(true)
		h.step()
	}
	h.wantRestarts(1)
	if v := h.metric("patchd_agent_restarts_total", "reason", "role_changed"); v != 1 {
		t.Errorf("restarts_total{role_changed} = %v, want 1", v)
	}
	if v := h.metric("patchd_agent_restarts_total", "reason", "credentials_stuck"); v != 0 {
		t.Errorf("restarts_total{credentials_stuck} = %v, want 0", v)
	}
	if v := h.metric("patchd_agent_last_restart_timestamp_seconds"); v != float64(h.clock.Now().Unix()) {
		t.Errorf("last restart timestamp = %v, want %v", v, h.clock.Now().Unix())
	}
	if v := h.metric("patchd_agent_up"); v != 1 {
		t.Errorf("agent_up = %v after a good restart, want 1", v)
	}
	st := h.k.Status()
	if st.LastRestart == nil || st.LastRestart.Reason != RoleChanged || !st.LastRestart.OK || st.Pending != nil {
		t.Fatalf("status = %+v, want last restart role_changed ok and nothing pending", st)
	}
	// The record survives a patchd restart, and so does the metric.
	h.reopen(testConfig())
	if v := h.metric("patchd_agent_last_restart_timestamp_seconds"); v != float64(h.clock.Now().Unix()) {
		t.Errorf("last restart timestamp after reopen = %v, want %v", v, h.clock.Now().Unix())
	}
	if st := h.k.Status(); st.LastRestart == nil || !strings.Contains(st.LastRestart.Detail, "role changed from a to b") {
		t.Errorf("status after reopen = %+v, want the last restart with its detail", st)
	}
}

func TestDeferredUntilCurrentEmpty(t *testing.T) {
	h := newHarness(t, testConfig())
	f := h.currentFile("7c3e1a2b-0000-4000-8000-000000000001")
	h.roleChange()
	for range 3 {
		h.step()
		h.clock.Advance(time.Minute)
	}
	h.wantRestarts(0)
	if v := h.metric("patchd_agent_restart_deferred"); v != 1 {
		t.Errorf("restart_deferred = %v, want 1", v)
	}
	if v := h.metric("patchd_agent_restarts_deferred_total"); v != 1 {
		t.Errorf("restarts_deferred_total = %v, want 1 (one per deferred restart, not per check)", v)
	}
	if st := h.k.Status(); st.Pending == nil || !st.Pending.Deferred {
		t.Fatalf("status = %+v, want a deferred pending restart", st)
	}
	// A patchd restart keeps the pending restart.
	h.reopen(testConfig())
	if v := h.metric("patchd_agent_restart_deferred"); v != 1 {
		t.Errorf("restart_deferred after reopen = %v, want 1", v)
	}
	h.imdsServes(true) // the new watcher's first answer
	if err := os.Remove(f); err != nil {
		t.Fatal(err)
	}
	h.step()
	h.wantRestarts(1)
	if v := h.metric("patchd_agent_restart_deferred"); v != 0 {
		t.Errorf("restart_deferred = %v after the restart, want 0", v)
	}
}

func TestMaxDefer(t *testing.T) {
	cfg := testConfig()
	cfg.MaxDefer = 30 * time.Minute
	h := newHarness(t, cfg)
	h.currentFile("stuck-document")
	// The restart first waits 40 min for IMDS to serve credentials: that
	// time does not count against max_defer.
	h.k.Observe(imds.Observation{Known: true, Changed: true, Reason: "role changed", Identity: imds.Identity{Role: "b"}})
	h.step()
	h.clock.Advance(40 * time.Minute)
	h.imdsServes(true)
	h.step()
	h.clock.Advance(29 * time.Minute)
	h.step()
	h.wantRestarts(0)
	h.clock.Advance(time.Minute)
	h.step()
	h.wantRestarts(1)
}

func TestStormIsCappedPerHour(t *testing.T) {
	cfg := testConfig()
	cfg.MaxRestartsPerHour = 3
	h := newHarness(t, cfg)
	for range 10 {
		h.roleChange()
		h.step()
		h.clock.Advance(time.Minute)
	}
	h.wantRestarts(3)
	if v := h.metric("patchd_agent_restarts_refused_total"); v != 1 {
		t.Errorf("restarts_refused_total = %v, want 1 (the one held-back restart)", v)
	}
	// The limit survives a patchd restart.
	h.reopen(cfg)
	h.imdsServes(true)
	out := h.k.Request(Manual, "by hand")
	h.step()
	h.wantRestarts(3)
	if o := <-out; o.Action != "pending" {
		t.Errorf("manual request while one waits: %+v, want pending", o)
	}
	// The first restart (12:00) leaves the sliding hour at 13:00; the
	// pending restart goes then, and only one. It is now 12:10.
	h.clock.Advance(time.Hour - 10*time.Minute - time.Second)
	h.step()
	h.wantRestarts(3)
	h.clock.Advance(time.Second)
	h.step()
	h.wantRestarts(4)
	h.step()
	h.wantRestarts(4)
}

func TestCredentialsStuckOncePerEpisode(t *testing.T) {
	h := newHarness(t, testConfig())
	refreshes := 0
	h.k.opts.RefreshCredentials = func() { refreshes++ }
	credErr := agentlog.Event{Kind: agentlog.CredentialsError, Message: "Retrieve credentials produced error: EC2RoleRequestError"}
	sleep := agentlog.Event{Kind: agentlog.CredentialsError, Message: "Sleeping for 27m0s before retrying retrieve credentials", Backoff: 27 * time.Minute}
	h.imdsServes(true)
	h.clock.Advance(time.Minute)
	h.k.LogEvent(credErr)
	h.k.LogEvent(sleep)
	h.step()
	// The last IMDS answer is older than the errors: ask again, do not act
	// on it.
	h.wantRestarts(0)
	if refreshes != 1 {
		t.Fatalf("%d IMDS refreshes asked, want 1 at the start of the episode", refreshes)
	}
	h.imdsServes(false)
	h.step()
	h.wantRestarts(0) // IMDS has no credentials: restarting cannot help
	h.clock.Advance(time.Minute)
	h.imdsServes(true)
	h.step()
	h.wantRestarts(1)
	if st := h.k.Status(); st.LastRestart == nil || st.LastRestart.Reason != CredentialsStuck || !strings.Contains(st.LastRestart.Detail, "27m0s") {
		t.Fatalf("last restart = %+v, want credentials_stuck naming the agent's back-off", st.LastRestart)
	}
	for range 5 {
		h.k.LogEvent(credErr)
		h.clock.Advance(time.Minute)
		h.imdsServes(true)
		h.step()
	}
	h.wantRestarts(1) // same episode
	// A successful connection ends the episode; new errors start another.
	h.k.LogEvent(agentlog.Event{Kind: agentlog.Other, Message: "Successfully connected with instance profile role credentials"})
	h.step()
	h.clock.Advance(time.Minute)
	h.k.LogEvent(credErr)
	h.step()
	h.imdsServes(true)
	h.step()
	h.wantRestarts(2)
	// So does an agent start.
	h.k.LogEvent(agentlog.Event{Kind: agentlog.AgentStart, Message: "amazon-ssm-agent - v3.3.1142.0", AgentVersion: "3.3.1142.0"})
	h.step()
	if st := h.k.Status(); st.CredentialsEpisode != nil || st.AgentVersion != "3.3.1142.0" {
		t.Fatalf("status = %+v, want no episode and the agent's version", st)
	}
	h.clock.Advance(time.Minute)
	h.k.LogEvent(credErr)
	h.step()
	h.imdsServes(true)
	h.step()
	// No successful connection since the last restart for credentials:
	// the next one waits (TestCredentialsStuckBacksOff).
	h.wantRestarts(2)
	h.clock.Advance(stuckBackoff)
	h.step()
	h.wantRestarts(3)
	if v := h.metric("patchd_agent_restarts_total", "reason", "credentials_stuck"); v != 3 {
		t.Errorf("restarts_total{credentials_stuck} = %v, want 3", v)
	}
}

// Any restart answers the credential errors seen before it: a manual
// restart made while errors come in is not followed by a
// credentials_stuck one for the same episode.
func TestRestartEndsTheEpisodesClaim(t *testing.T) {
	h := newHarness(t, testConfig())
	h.imdsServes(true)
	h.clock.Advance(time.Minute)
	h.k.LogEvent(agentlog.Event{Kind: agentlog.CredentialsError, Message: "AccessDeniedException"})
	h.k.Request(Manual, "by hand")
	h.step()
	h.wantRestarts(1)
	h.clock.Advance(time.Minute)
	h.imdsServes(true)
	h.step()
	h.wantRestarts(1)
}

// A credentials error logged before the agent's last restart by patchd is
// not a new episode: after a crash of patchd the log tail hands out the
// entries of its last second again, and those must not restart the agent a
// second time. An error logged after the restart still counts.
func TestCredentialErrorBeforeLastRestartIgnored(t *testing.T) {
	h := newHarness(t, testConfig())
	h.imdsServes(true)
	h.clock.Advance(time.Minute)
	logged := h.clock.Now()
	credErr := agentlog.Event{Time: logged, Kind: agentlog.CredentialsError, Message: "AccessDeniedException"}
	h.k.LogEvent(credErr)
	h.step()
	h.clock.Advance(time.Minute)
	h.imdsServes(true)
	h.step()
	h.wantRestarts(1)

	// patchd is killed and started again; the tail replays the error.
	h.reopen(testConfig())
	h.clock.Advance(time.Minute)
	h.k.LogEvent(credErr)
	h.imdsServes(true)
	h.step()
	h.wantRestarts(1)
	if st := h.k.Status(); st.CredentialsEpisode != nil {
		t.Fatalf("a replayed error opened an episode: %+v", st.CredentialsEpisode)
	}

	later := credErr
	later.Time = h.clock.Now()
	h.k.LogEvent(later)
	h.step()
	h.clock.Advance(time.Minute)
	h.imdsServes(true)
	h.step()
	h.wantRestarts(2)
}

// Credential errors that go on after stuck-credentials restarts (a policy
// that still denies) are restarted for with growing gaps, not at every
// new episode.
func TestCredentialsStuckBacksOff(t *testing.T) {
	cfg := testConfig()
	cfg.MaxRestartsPerHour = 100 // the gap, not the hourly cap, is under test
	h := newHarness(t, cfg)
	episode := func() {
		h.k.LogEvent(agentlog.Event{Kind: agentlog.AgentStart, Message: "Starting Core Agent"})
		h.step()
		h.clock.Advance(time.Second)
		h.k.LogEvent(agentlog.Event{Kind: agentlog.CredentialsError, Message: "AccessDeniedException"})
		h.step()
		h.clock.Advance(time.Second)
		h.imdsServes(true)
		h.step()
	}
	episode()
	h.wantRestarts(1)
	episode() // right after the restart: errors again
	h.wantRestarts(1)
	h.clock.Advance(stuckBackoff - 5*time.Second)
	h.step()
	h.wantRestarts(1)
	h.clock.Advance(5 * time.Second)
	h.step()
	h.wantRestarts(2)
	episode()
	h.clock.Advance(stuckBackoff)
	h.step()
	h.wantRestarts(2) // the second gap is twice the first
	h.clock.Advance(stuckBackoff)
	h.step()
	h.wantRestarts(3)
	// A successful connection resets the gaps.
	h.k.LogEvent(agentlog.Event{Kind: agentlog.Other, Message: "Credentials ready"})
	h.step()
	episode()
	h.wantRestarts(4)
}

// A role change waits until IMDS serves the new role's credentials, asking
// the watcher for a fresh look at most once per re-check interval.
func TestRoleChangeWaitsForCredentials(t *testing.T) {
	h := newHarness(t, testConfig())
	refreshes := 0
	h.k.opts.RefreshCredentials = func() { refreshes++ }
	h.k.Observe(imds.Observation{Known: true, Changed: true, ServesCredentials: false, Reason: "instance profile attached where there was none",
		Identity: imds.Identity{InstanceProfileArn: "arn:b", InstanceProfileID: "AIPB", Role: "b"}})
	h.step()
	h.step()
	h.wantRestarts(0)
	if st := h.k.Status(); st.Pending == nil || !st.Pending.WaitingCredentials {
		t.Fatalf("status = %+v, want a pending restart waiting for credentials", st)
	}
	if refreshes != 1 {
		t.Fatalf("%d refreshes, want 1 (rate-limited)", refreshes)
	}
	h.clock.Advance(15 * time.Second)
	h.step()
	if refreshes != 2 {
		t.Fatalf("%d refreshes after a re-check interval, want 2", refreshes)
	}
	h.imdsServes(true)
	h.step()
	h.wantRestarts(1)
}

// An IMDS failure is not "serving credentials".
func TestCredentialsStuckNeedsKnownIMDS(t *testing.T) {
	h := newHarness(t, testConfig())
	h.imdsServes(true)
	h.k.Observe(imds.Observation{Known: false, ServesCredentials: true})
	h.k.LogEvent(agentlog.Event{Kind: agentlog.CredentialsError, Message: "AccessDeniedException"})
	h.step()
	h.wantRestarts(0)
}

func TestRestartDisabled(t *testing.T) {
	cfg := testConfig()
	cfg.Restart = false
	h := newHarness(t, cfg)
	h.roleChange()
	h.step()
	out := h.k.Request(Manual, "by hand")
	h.step()
	h.wantRestarts(0)
	if o := <-out; o.Action != "would_restart" {
		t.Errorf("manual request with restarts off: %+v, want would_restart", o)
	}
	for _, r := range Reasons {
		if v := h.metric("patchd_agent_restarts_total", "reason", string(r)); v != 0 {
			t.Errorf("restarts_total{%s} = %v, want 0", r, v)
		}
	}
	if st := h.k.Status(); st.Pending != nil || st.LastRestart != nil || st.RestartsLastHour != 0 {
		t.Errorf("status = %+v, want nothing pending or recorded", st)
	}
}

func TestRestartFailures(t *testing.T) {
	for _, tc := range []struct {
		name     string
		fail     error
		inactive bool
		want     string
	}{
		{"command fails", errors.New("Job for amazon-ssm-agent.service failed"), false, "failed"},
		{"not active again", nil, true, "not active"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := testConfig()
			cfg.RestartCheckTimeout = 200 * time.Millisecond
			h := newHarness(t, cfg)
			h.mgr.fail, h.mgr.inactive = tc.fail, tc.inactive
			out := h.k.Request(Manual, "test")
			done := make(chan struct{})
			go func() {
				defer close(done)
				h.step()
			}()
			<-h.mgr.done
			if tc.inactive {
				// waitActive waits on the fake clock (its poll timer and the
				// check timeout): let the check timeout pass.
				bctx, bcancel := context.WithTimeout(context.Background(), 30*time.Second)
				defer bcancel()
				if err := h.clock.BlockUntilContext(bctx, 2); err != nil {
					t.Fatal(err)
				}
				h.clock.Advance(cfg.RestartCheckTimeout)
			}
			<-done
			o := <-out
			if o.Action != "failed" || !strings.Contains(o.Message, tc.want) {
				t.Errorf("outcome %+v, want failed mentioning %q", o, tc.want)
			}
			if v := h.metric("patchd_agent_restart_failures_total"); v != 1 {
				t.Errorf("restart_failures_total = %v, want 1", v)
			}
			if v := h.metric("patchd_agent_restarts_total", "reason", "manual"); v != 1 {
				t.Errorf("restarts_total{manual} = %v, want 1 (attempts)", v)
			}
			if st := h.k.Status(); st.LastRestart == nil || st.LastRestart.OK || st.LastRestart.Error == "" {
				t.Errorf("last restart = %+v, want not ok with an error", st.LastRestart)
			}
		})
	}
}

// LogEvent is called from the log tail's goroutine: it must never block.
func TestLogEventNeverBlocks(t *testing.T) {
	h := newHarness(t, testConfig())
	for range 1000 {
		h.k.LogEvent(agentlog.Event{Kind: agentlog.CredentialsError, Message: "AccessDeniedException"})
		h.k.LogEvent(agentlog.Event{Kind: agentlog.Other, Message: "irrelevant"})
	}
	if v := h.metric("patchd_agent_keeper_events_dropped_total"); v != 1000-256 {
		t.Errorf("dropped = %v, want %d", v, 1000-256)
	}
}

// Run end to end on the fake clock: a role change restarts at once; with a
// document in current/ the restart waits for the periodic re-check after it
// leaves.
func TestRunRestartsAndRechecks(t *testing.T) {
	h := newHarness(t, testConfig())
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- h.k.Run(ctx) }()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Error(err)
		}
	}()
	waitRestart := func() {
		t.Helper()
		select {
		case <-h.mgr.done:
		case <-time.After(30 * time.Second):
			t.Fatal("no restart")
		}
	}
	h.mgr.hold = make(chan struct{})
	h.roleChange()
	waitRestart()
	// A request made while that restart runs is a restart of its own,
	// decided after it: here deferred by a document in current/.
	f := h.currentFile("running-document")
	out := h.k.Request(Manual, "by hand")
	h.mgr.hold <- struct{}{}
	if o := <-out; o.Action != "deferred" {
		t.Fatalf("outcome %+v, want deferred", o)
	}
	if err := os.Remove(f); err != nil {
		t.Fatal(err)
	}
	bctx, bcancel := context.WithTimeout(ctx, 30*time.Second)
	defer bcancel()
	if err := h.clock.BlockUntilContext(bctx, 2); err != nil { // both tickers
		t.Fatal(err)
	}
	h.clock.Advance(15 * time.Second)
	waitRestart()
	h.mgr.hold <- struct{}{}
	h.wantRestarts(2)
}

// TestLogEventKeepsItsCopy: an event's strings are the log tail's buffer,
// which the next line overwrites once LogEvent returns; the keeper handles
// the event later, from its own copy.
func TestLogEventKeepsItsCopy(t *testing.T) {
	h := newHarness(t, testConfig())
	c := agentlog.Classifier{Emit: func(e agentlog.Entry) { h.k.LogEvent(e.Event) }}
	feed := func(l string) { c.Feed([]byte(l), 0, int64(len(l))+1) }
	feed("INFO [amazon-ssm-agent] Starting Core Agent: amazon-ssm-agent - v3.3.1142.0")
	// This line hands the first entry out, then takes the buffer over.
	feed("INFO [amazon-ssm-agent] Starting Core Agent: amazon-ssm-agent - v9.9.9999.9")
	h.step()
	if st := h.k.Status(); st.AgentVersion != "3.3.1142.0" {
		t.Fatalf("agent version %q, want 3.3.1142.0 (the event handed out)", st.AgentVersion)
	}
}
