package compliance

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jonboulle/clockwork"

	"github.com/patchd/patchd/agent/compliance/ssmtest"
	"github.com/patchd/patchd/agent/ledger"
	"github.com/patchd/patchd/agent/uploads"
)

const instance = "i-0123456789abcdef0"

var closed = time.Date(2026, 11, 22, 23, 17, 3, 0, time.UTC)

func sampleEntry(id string, postOutcome string) ledger.Entry {
	return ledger.Entry{
		CycleID: id, Trigger: "observed", Opened: closed.Add(-10 * time.Minute), Closed: closed,
		DocumentName: "AWS-RunPatchBaseline", CommandID: "9651654d-6342-4562-a8d3-983ab5d4db15", Result: "success", Rebooted: true,
		Hooks: []ledger.HookRun{
			{Phase: "pre-patch", Name: "10-drain", Outcome: "success", Attempt: 1, Duration: 0.5},
			{Phase: "pre-reboot", Name: "10-flush", Outcome: "timed_out", ExitCode: -1, Attempt: 1, Duration: 300},
			{Phase: "post-patch", Name: "10-undrain", Outcome: postOutcome, ExitCode: 3, Attempt: 4, Duration: 1.25},
		},
	}
}

func defaultSeverity(phase string) string {
	if phase == "post-patch" || phase == ItemCycle {
		return "HIGH"
	}
	return "MEDIUM"
}

func byID(items []Item) map[string]Item {
	m := map[string]Item{}
	for _, it := range items {
		m[it.ID] = it
	}
	return m
}

func TestBuild(t *testing.T) {
	e := sampleEntry("c1", "failed")
	r := Build(&e, nil, defaultSeverity, closed.Add(time.Minute))
	items := byID(r.Items)
	for id, want := range map[string][2]string{
		"pre-patch/10-drain":    {Compliant, "MEDIUM"},
		"pre-reboot/10-flush":   {NonCompliant, "MEDIUM"},
		"post-patch/10-undrain": {NonCompliant, "HIGH"},
		ItemCycle:               {Compliant, "HIGH"},
		ItemMonitoring:          {NonCompliant, "HIGH"},
	} {
		it, ok := items[id]
		if !ok {
			t.Errorf("no item %s", id)
			continue
		}
		if it.Status != want[0] || it.Severity != want[1] {
			t.Errorf("%s: %s/%s, want %s/%s", id, it.Status, it.Severity, want[0], want[1])
		}
	}
	if d := items["post-patch/10-undrain"].Details; d["ExitCode"] != "3" || d["Attempt"] != "4" || d["DurationSeconds"] != "1.250" {
		t.Errorf("details = %v", d)
	}
	if r.ExecutionID != e.CommandID || r.ExecutionType != "Command" || !r.ExecutionTime.Equal(closed) {
		t.Errorf("summary = %s %s %s", r.ExecutionID, r.ExecutionType, r.ExecutionTime)
	}

	ok := sampleEntry("c2", "success")
	if it := byID(Build(&ok, nil, defaultSeverity, closed).Items)[ItemMonitoring]; it.Status != Compliant {
		t.Errorf("monitoring after a passing post-patch = %s", it.Status)
	}
	over := Build(&ok, &Overdue{CycleID: "c3", Opened: closed, Since: closed.Add(3 * time.Hour)}, defaultSeverity, closed.Add(4*time.Hour))
	if it := byID(over.Items)[ItemMonitoring]; it.Status != NonCompliant || it.Details["CycleId"] != "c3" {
		t.Errorf("monitoring with an overdue cycle = %+v", it)
	}
	if none := Build(nil, nil, defaultSeverity, closed); len(none.Items) != 1 || none.Items[0].Status != Compliant {
		t.Errorf("no cycle yet: %+v", none.Items)
	}
}

// harness runs a Reporter against a local SSM endpoint with Connect's
// chain (credentials and region from the environment here; from a real
// IMDS in TestIMDSMockEndToEnd).
type harness struct {
	t      *testing.T
	srv    *ssmtest.Server
	clock  *clockwork.FakeClock
	state  string
	ledger string
	tr     *uploads.Tracker
	logs   *syncBuffer
	rep    *Reporter
	cancel context.CancelFunc
	done   chan error
	mode   string
	tries  chan error
	open   func() (OpenCycle, bool)
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func envCredentials(t *testing.T, endpoint string) {
	t.Setenv("AWS_ACCESS_KEY_ID", "AKIDPATCHDTEST000001")
	t.Setenv("AWS_SECRET_ACCESS_KEY", "secret")
	t.Setenv("AWS_SESSION_TOKEN", "")
	t.Setenv("AWS_REGION", "eu-west-1")
	t.Setenv("AWS_ENDPOINT_URL_SSM", endpoint)
	noSharedFiles(t)
}

// noSharedFiles keeps the machine's ~/.aws out of the test, should the
// chain ever read shared files again (it does not: see Connect).
func noSharedFiles(t *testing.T) {
	empty := filepath.Join(t.TempDir(), "none")
	t.Setenv("AWS_CONFIG_FILE", empty)
	t.Setenv("AWS_SHARED_CREDENTIALS_FILE", empty)
	t.Setenv("AWS_PROFILE", "")
}

func newHarness(t *testing.T, srv *ssmtest.Server, state string) *harness {
	t.Helper()
	if state == "" {
		state = t.TempDir()
	}
	tr, err := uploads.New(nil)
	if err != nil {
		t.Fatal(err)
	}
	h := &harness{t: t, srv: srv, clock: clockwork.NewFakeClockAt(closed.Add(time.Hour)), state: state,
		ledger: filepath.Join(state, ledger.FileName), tr: tr, logs: &syncBuffer{}, mode: ModeOn, tries: make(chan error, 100)}
	return h
}

func (h *harness) start(connect ConnectOptions) {
	h.t.Helper()
	h.rep = New(Options{
		StateDir: h.state, LedgerPath: h.ledger, Mode: h.mode,
		InstanceID: func(context.Context) string { return instance },
		Connect: func(ctx context.Context) (Sender, error) {
			s, err := Connect(ctx, connect)
			if err != nil {
				return nil, err
			}
			return s, nil
		},
		// AttemptTimeout is what a hang costs; a loaded machine must not
		// make an answered request look like one.
		Severity: defaultSeverity, FirstRetry: 5 * time.Second, MaxRetry: time.Minute,
		AttemptTimeout: 3 * time.Second, CheckInterval: time.Hour,
		Clock: h.clock, Logger: slog.New(slog.NewTextHandler(h.logs, nil)), Uploads: h.tr,
		Attempted: func(err error) { h.tries <- err },
		Open:      h.open, FailsafeAge: func() time.Duration { return 3 * time.Hour },
	})
	ctx, cancel := context.WithCancel(context.Background())
	h.cancel, h.done = cancel, make(chan error, 1)
	go func() { h.done <- h.rep.Run(ctx) }()
	h.t.Cleanup(h.stop)
}

func (h *harness) stop() {
	if h.cancel == nil {
		return
	}
	h.cancel()
	if err := <-h.done; err != nil {
		h.t.Errorf("Run: %v", err)
	}
	h.cancel = nil
}

// request waits for the server to see the next request.
func (h *harness) request() {
	h.t.Helper()
	select {
	case <-h.srv.Requests():
	case <-time.After(30 * time.Second):
		h.t.Fatalf("no request reached the endpoint; log:\n%s", h.logs.String())
	}
}

// tried waits for the reporter's next try to end.
func (h *harness) tried() error {
	h.t.Helper()
	select {
	case err := <-h.tries:
		return err
	case <-time.After(30 * time.Second):
		h.t.Fatalf("the reporter made no try; log:\n%s", h.logs.String())
	}
	return nil
}

// waiting waits until the reporter sleeps on its timer, so that an
// Advance reaches it.
func (h *harness) waiting() {
	h.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := h.clock.BlockUntilContext(ctx, 1); err != nil {
		h.t.Fatalf("the reporter did not go back to waiting: %v\n%s", err, h.logs.String())
	}
}

func (h *harness) checkValid() {
	h.t.Helper()
	if inv := h.srv.Invalid(); len(inv) > 0 {
		h.t.Fatalf("the endpoint refused requests as invalid: %v", inv)
	}
}

func TestDeliverThroughSDK(t *testing.T) {
	srv := ssmtest.New()
	defer srv.Close()
	envCredentials(t, srv.URL)
	h := newHarness(t, srv, "")
	h.start(ConnectOptions{IMDSEndpoint: "http://127.0.0.1:9"})
	h.waiting()
	h.rep.CycleClosed(sampleEntry("c1", "failed"))
	h.request()
	h.waiting()
	h.checkValid()
	acc := srv.Accepted()
	if len(acc) != 1 {
		t.Fatalf("%d requests accepted", len(acc))
	}
	req := acc[0]
	if req.ComplianceType != Type || req.ResourceId != instance || req.ResourceType != "ManagedInstance" || req.UploadType != "COMPLETE" {
		t.Errorf("request = %+v", req)
	}
	if req.AccessKey != "AKIDPATCHDTEST000001" || req.Region != "eu-west-1" {
		t.Errorf("signed with %s in %s", req.AccessKey, req.Region)
	}
	if got := time.Unix(int64(req.ExecutionSummary.ExecutionTime), 0).UTC(); !got.Equal(closed) || req.ExecutionSummary.ExecutionId != "9651654d-6342-4562-a8d3-983ab5d4db15" {
		t.Errorf("execution summary = %+v", req.ExecutionSummary)
	}
	if len(req.Items) != 5 {
		t.Errorf("%d items, want 3 hooks + cycle + monitoring-restored", len(req.Items))
	}
	if s := h.tr.Snapshot()[1]; s.LastSuccess.IsZero() || s.Pending != 0 {
		t.Errorf("compliance status = %+v", s)
	}
}

// Throttling, a 500, garbage and a hang are retried with a growing, capped
// wait until the report goes through; each failure is counted by reason.
func TestRetriesTransientFailures(t *testing.T) {
	srv := ssmtest.New()
	defer srv.Close()
	envCredentials(t, srv.URL)
	srv.Fail(ssmtest.Throttle, ssmtest.ServerError, ssmtest.Garbage, ssmtest.Hang, ssmtest.Throttle, ssmtest.Throttle)
	h := newHarness(t, srv, "")
	h.start(ConnectOptions{IMDSEndpoint: "http://127.0.0.1:9"})
	h.waiting()
	h.rep.CycleClosed(sampleEntry("c1", "success"))
	var waits []time.Duration
	for i := 0; i < 6; i++ {
		h.request()
		h.waiting()
		waits = append(waits, h.rep.next.Sub(h.clock.Now()))
		if len(srv.Accepted()) != 0 {
			t.Fatalf("accepted after %d faults", i+1)
		}
		h.clock.Advance(time.Minute)
	}
	h.request()
	h.waiting()
	h.checkValid()
	if n := len(srv.Accepted()); n != 1 {
		t.Fatalf("%d accepted, want 1", n)
	}
	for i, w := range waits {
		if w > time.Minute || w <= 0 {
			t.Errorf("wait %d = %s, want in (0, 1m]", i, w)
		}
		if i > 0 && i < 3 && w <= waits[i-1]/2 {
			t.Errorf("wait %d = %s does not grow from %s", i, w, waits[i-1])
		}
	}
	st := h.tr.Snapshot()[1]
	if st.LastSuccess.IsZero() || st.Reason != "" {
		t.Errorf("status after the success = %+v", st)
	}
	if !strings.Contains(h.logs.String(), "reason=throttled") || !strings.Contains(h.logs.String(), "reason=server_error") || !strings.Contains(h.logs.String(), "reason=network") {
		t.Errorf("log does not name the reasons:\n%s", h.logs.String())
	}
}

// AccessDenied: said once, with the permission; no retry however long one
// waits; a new cycle tries once more.
func TestAccessDeniedOnce(t *testing.T) {
	srv := ssmtest.New()
	defer srv.Close()
	envCredentials(t, srv.URL)
	srv.Fail(ssmtest.AccessDenied, ssmtest.AccessDenied)
	h := newHarness(t, srv, "")
	h.start(ConnectOptions{IMDSEndpoint: "http://127.0.0.1:9"})
	h.waiting()
	h.rep.CycleClosed(sampleEntry("c1", "success"))
	h.request()
	for range 5 {
		h.waiting()
		h.clock.Advance(time.Hour)
	}
	h.waiting()
	if n := srv.Attempts(); n != 1 {
		t.Fatalf("%d attempts after AccessDenied, want 1", n)
	}
	if n := strings.Count(h.logs.String(), "level=ERROR msg=\"Systems Manager refused"); n != 1 {
		t.Errorf("the missing permission is named %d times, want once:\n%s", n, h.logs.String())
	}
	if st := h.tr.Snapshot()[1]; st.Reason != uploads.ReasonAccessDenied || st.Pending != 1 {
		t.Errorf("status = %+v", st)
	}
	h.rep.CycleClosed(sampleEntry("c2", "success"))
	h.request()
	h.waiting()
	if n := srv.Attempts(); n != 2 {
		t.Errorf("%d attempts after a new cycle, want 2", n)
	}
}

// The outbox survives a restart; a broken one is set aside with a clear log
// and the report rebuilt from the ledger.
func TestOutboxAcrossRestarts(t *testing.T) {
	srv := ssmtest.New()
	defer srv.Close()
	envCredentials(t, srv.URL)
	state := t.TempDir()
	e := sampleEntry("c1", "success")
	if err := ledger.Append(filepath.Join(state, ledger.FileName), e, 10); err != nil {
		t.Fatal(err)
	}

	// First run: the endpoint hangs; patchd stops with the report unsent.
	srv.Fail(ssmtest.Hang)
	h := newHarness(t, srv, state)
	h.start(ConnectOptions{IMDSEndpoint: "http://127.0.0.1:9"})
	h.request()
	h.waiting()
	h.stop()
	var box outbox
	data, err := os.ReadFile(filepath.Join(state, OutboxFile))
	if err != nil || json.Unmarshal(data, &box) != nil || box.Pending == nil || box.Pending.CycleID != "c1" {
		t.Fatalf("outbox after the stop: %s (%v)", data, err)
	}

	// Second run: delivered from the outbox.
	h2 := newHarness(t, srv, state)
	h2.start(ConnectOptions{IMDSEndpoint: "http://127.0.0.1:9"})
	h2.request()
	h2.waiting()
	h2.stop()
	if n := len(srv.Accepted()); n != 1 {
		t.Fatalf("%d accepted after the restart", n)
	}

	// Third run: nothing new to send.
	h3 := newHarness(t, srv, state)
	h3.start(ConnectOptions{IMDSEndpoint: "http://127.0.0.1:9"})
	h3.waiting()
	h3.stop()
	if n := srv.Attempts(); n != 2 {
		t.Errorf("%d attempts; an already delivered report was sent again", n)
	}

	// A broken outbox: set aside, logged, rebuilt from the ledger.
	if err := os.WriteFile(filepath.Join(state, OutboxFile), []byte("{\"pending\": tru"), 0o600); err != nil {
		t.Fatal(err)
	}
	h4 := newHarness(t, srv, state)
	h4.start(ConnectOptions{IMDSEndpoint: "http://127.0.0.1:9"})
	h4.request()
	h4.waiting()
	h4.stop()
	if !strings.Contains(h4.logs.String(), "does not parse") || !strings.Contains(h4.logs.String(), "moved aside") {
		t.Errorf("no clear log for the broken outbox:\n%s", h4.logs.String())
	}
	aside, _ := filepath.Glob(filepath.Join(state, OutboxFile+".broken-*"))
	if len(aside) != 1 {
		t.Errorf("broken outbox kept as %v", aside)
	}
	if acc := srv.Accepted(); len(acc) != 2 || acc[1].ExecutionSummary.ExecutionId != e.CommandID {
		t.Errorf("the report was not rebuilt from the ledger: %d accepted", len(acc))
	}
	h4.checkValid()
}

// auto without credentials is quiet: logged once at info, nothing counted.
func TestAutoWithoutCredentialsIsQuiet(t *testing.T) {
	noSharedFiles(t)
	for _, k := range []string{"AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_REGION", "AWS_DEFAULT_REGION", "AWS_EC2_METADATA_SERVICE_ENDPOINT"} {
		t.Setenv(k, "")
	}
	srv := ssmtest.New()
	defer srv.Close()
	t.Setenv("AWS_ENDPOINT_URL_SSM", srv.URL)
	h := newHarness(t, srv, "")
	h.mode = ModeAuto
	h.start(ConnectOptions{IMDSEndpoint: "http://127.0.0.1:9", Timeout: 2 * time.Second})
	h.waiting()
	h.rep.CycleClosed(sampleEntry("c1", "success"))
	for range 3 {
		if err := h.tried(); err == nil {
			t.Fatal("sent without credentials")
		}
		h.waiting()
		h.clock.Advance(time.Minute)
	}
	if n := strings.Count(h.logs.String(), "compliance report waits"); n != 1 {
		t.Errorf("logged %d times, want once:\n%s", n, h.logs.String())
	}
	if srv.Attempts() != 0 {
		t.Errorf("a request without credentials")
	}
	if st := h.tr.Snapshot()[1]; st.Reason != "" {
		t.Errorf("auto counted a failure: %+v", st)
	}
}

// More hooks than the service takes items (10,000): the cycle's own items
// stay, and the endpoint accepts the request.
func TestManyHooksStayWithinTheItemLimit(t *testing.T) {
	e := sampleEntry("c1", "success")
	for i := range 10050 {
		e.Hooks = append(e.Hooks, ledger.HookRun{Phase: "post-patch", Name: fmt.Sprintf("%s-%05d", strings.Repeat("x", 120), i), Outcome: "success", Attempt: 1})
	}
	r := Build(&e, nil, defaultSeverity, closed)
	if len(r.Items) != maxItems || r.Items[len(r.Items)-2].ID != ItemCycle || r.Items[len(r.Items)-1].ID != ItemMonitoring {
		t.Fatalf("%d items, last %s", len(r.Items), r.Items[len(r.Items)-1].ID)
	}
	srv := ssmtest.New()
	defer srv.Close()
	envCredentials(t, srv.URL)
	s, err := Connect(context.Background(), ConnectOptions{IMDSEndpoint: "http://127.0.0.1:9"})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Put(context.Background(), instance, r); err != nil {
		t.Fatalf("Put: %v (invalid: %v)", err, srv.Invalid())
	}
}

// A cycle open past the failsafe turns monitoring-restored NON_COMPLIANT
// before it closes, once.
func TestOverdueCycle(t *testing.T) {
	srv := ssmtest.New()
	defer srv.Close()
	envCredentials(t, srv.URL)
	h := newHarness(t, srv, "")
	opened := h.clock.Now().Add(-2 * time.Hour)
	h.open = func() (OpenCycle, bool) { return OpenCycle{ID: "c9", CommandID: "cmd-9", Opened: opened}, true }
	h.start(ConnectOptions{IMDSEndpoint: "http://127.0.0.1:9"})
	h.waiting()
	if srv.Attempts() != 0 {
		t.Fatal("reported a cycle open for less than the failsafe")
	}
	h.clock.Advance(time.Hour + time.Minute) // the check interval: 1 h
	if err := h.tried(); err != nil {
		t.Fatal(err)
	}
	h.waiting()
	h.clock.Advance(time.Hour)
	h.waiting()
	h.checkValid()
	acc := srv.Accepted()
	if len(acc) != 1 {
		t.Fatalf("%d reports, want 1", len(acc))
	}
	var mon ssmtest.Item
	for _, it := range acc[0].Items {
		if it.Id == ItemMonitoring {
			mon = it
		}
	}
	if mon.Status != NonCompliant || mon.Details["CycleId"] != "c9" || acc[0].ExecutionSummary.ExecutionId != "cmd-9" {
		t.Errorf("report = %+v", acc[0])
	}
}
