package imds

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jonboulle/clockwork"
	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
)

// fakeIMDS keeps IMDSv2's protocol (token PUT, token header, 401 for a
// missing or unknown token) and can be switched into a fault.
type fakeIMDS struct {
	mu      sync.Mutex
	id      Identity
	fault   string
	tokens  int
	token   string
	release chan struct{} // closed at the end of the test: frees stalled handlers
}

func newFakeIMDS(t *testing.T, id Identity) (*fakeIMDS, *httptest.Server) {
	f := &fakeIMDS{id: id, release: make(chan struct{})}
	srv := httptest.NewServer(f)
	t.Cleanup(func() { close(f.release); srv.Close() })
	return f, srv
}

func (f *fakeIMDS) set(fault string, id Identity) {
	f.mu.Lock()
	f.fault, f.id = fault, id
	f.mu.Unlock()
}

func (f *fakeIMDS) tokenCount() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.tokens
}

func (f *fakeIMDS) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	f.mu.Lock()
	fault, id := f.fault, f.id
	if r.Method == http.MethodPut && r.URL.Path == "/latest/api/token" {
		f.tokens++
		f.token = fmt.Sprintf("token-%d", f.tokens)
		tok := f.token
		f.mu.Unlock()
		if fault == "token-401" {
			http.Error(w, "unauthorized", http.StatusUnauthorized)
			return
		}
		w.Header().Set("X-Aws-Ec2-Metadata-Token-Ttl-Seconds", r.Header.Get("X-Aws-Ec2-Metadata-Token-Ttl-Seconds"))
		fmt.Fprint(w, tok)
		return
	}
	// token-401: IMDS forgot the old token and refuses new ones.
	valid := r.Header.Get("X-Aws-Ec2-Metadata-Token") == f.token && fault != "token-401"
	f.mu.Unlock()
	if !valid || fault == "401" {
		http.Error(w, "unauthorized", http.StatusUnauthorized)
		return
	}
	switch fault {
	case "timeout":
		select {
		case <-r.Context().Done():
		case <-f.release:
		}
		return
	case "slow-body":
		w.Header().Set("Content-Length", "1000")
		w.WriteHeader(http.StatusOK)
		fmt.Fprint(w, `{"Code": "Succ`)
		w.(http.Flusher).Flush()
		select {
		case <-r.Context().Done():
		case <-f.release:
		}
		return
	case "endless":
		// A body that does not end (bounded here so that a patchd
		// without a limit still finishes the test, and fails it).
		w.WriteHeader(http.StatusOK)
		chunk := make([]byte, 64<<10)
		for range endlessBytes / len(chunk) {
			if _, err := w.Write(chunk); err != nil {
				return
			}
		}
		return
	case "404":
		http.NotFound(w, r)
		return
	case "429":
		http.Error(w, "slow down", http.StatusTooManyRequests)
		return
	case "500":
		http.Error(w, "internal", http.StatusInternalServerError)
		return
	}
	switch {
	case r.URL.Path == "/latest/meta-data/iam/info":
		if fault == "garbage" {
			fmt.Fprint(w, `{"Code": "Success", "InstanceProfileArn": [}`)
			return
		}
		if !id.Attached() {
			http.NotFound(w, r)
			return
		}
		fmt.Fprintf(w, `{"Code":"Success","LastUpdated":%q,"InstanceProfileArn":%q,"InstanceProfileId":%q}`,
			time.Now().UTC().Format(time.RFC3339), id.InstanceProfileArn, id.InstanceProfileID)
	case r.URL.Path == "/latest/meta-data/iam/security-credentials/" && id.Attached():
		fmt.Fprintln(w, id.Role)
	case id.Attached() && r.URL.Path == "/latest/meta-data/iam/security-credentials/"+id.Role:
		if fault == "garbage-creds" {
			fmt.Fprint(w, `<html>`)
			return
		}
		fmt.Fprintf(w, `{"Code":"Success","LastUpdated":%q,"Type":"AWS-HMAC","AccessKeyId":"AKIA","SecretAccessKey":"s","Token":"t","Expiration":%q}`,
			time.Now().UTC().Format(time.RFC3339), time.Now().Add(time.Hour).UTC().Format(time.RFC3339))
	default:
		http.NotFound(w, r)
	}
}

type testWatcher struct {
	*Watcher
	reg *prometheus.Registry
	mu  sync.Mutex
	obs []Observation
	ch  chan Observation // every observation, for tests that wait on Run
}

func (tw *testWatcher) observed() []Observation {
	tw.mu.Lock()
	defer tw.mu.Unlock()
	return append([]Observation(nil), tw.obs...)
}

func (tw *testWatcher) changeCount() int {
	n := 0
	for _, o := range tw.observed() {
		if o.Changed {
			n++
		}
	}
	return n
}

func newTestWatcher(t *testing.T, endpoint, stateDir string, clock clockwork.Clock) *testWatcher {
	t.Helper()
	tw := &testWatcher{reg: prometheus.NewRegistry(), ch: make(chan Observation, 100)}
	w, err := New(Options{
		Endpoint:     endpoint,
		PollInterval: time.Minute,
		Timeout:      300 * time.Millisecond,
		MaxAttempts:  2,
		MaxBackoff:   20 * time.Millisecond,
		StateDir:     stateDir,
		Clock:        clock,
		Registerer:   tw.reg,
		OnObserve: func(o Observation) {
			tw.mu.Lock()
			tw.obs = append(tw.obs, o)
			tw.mu.Unlock()
			tw.ch <- o
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	tw.Watcher = w
	return tw
}

var (
	profA = Identity{"arn:aws:iam::123456789012:instance-profile/a", "AIPAAAAAAAAAAAAAAAAAA", "role-a"}
	profB = Identity{"arn:aws:iam::123456789012:instance-profile/b", "AIPABBBBBBBBBBBBBBBBB", "role-b"}
)

// Every fault is "unknown", never a change, and counted under its kind;
// when IMDS recovers with the same profile nothing has changed either.
func TestFaultsAreNeverChanges(t *testing.T) {
	for _, tc := range []struct {
		fault string
		kind  string
		known bool // a 404 everywhere is a real answer: no profile
	}{
		{"timeout", KindTimeout, false},
		{"slow-body", KindTimeout, false},
		{"token-401", KindUnauthorized, false},
		{"401", KindUnauthorized, false},
		{"404", KindNotFound, true},
		{"429", KindThrottled, false},
		{"500", KindServerError, false},
		{"garbage", KindBadResponse, false},
		{"garbage-creds", KindBadResponse, false},
		{"endless", KindBadResponse, false},
		{"connection", KindConnection, false},
	} {
		t.Run(tc.fault, func(t *testing.T) {
			t.Parallel()
			f, srv := newFakeIMDS(t, profA)
			endpoint := srv.URL
			tw := newTestWatcher(t, endpoint, t.TempDir(), clockwork.NewFakeClock())
			ctx := context.Background()
			if o := tw.Poll(ctx); !o.Known || o.Identity != profA || !o.ServesCredentials || o.Changed {
				t.Fatalf("baseline poll = %+v, want profile a, serving credentials, no change", o)
			}
			if tc.fault == "connection" {
				// A port that refuses connections.
				dead := httptest.NewServer(http.NotFoundHandler())
				dead.Close()
				tw.SetConfig(dead.URL, time.Minute, 300*time.Millisecond)
			} else {
				f.set(tc.fault, profA)
			}
			for range 2 {
				o := tw.Poll(ctx)
				if o.Known != tc.known || o.Changed {
					t.Fatalf("poll under fault = %+v, want known=%v and no change", o, tc.known)
				}
				if !tc.known && (o.Err == nil || o.Err.Kind != tc.kind || o.Identity != profA || o.ServesCredentials) {
					t.Fatalf("poll under fault = %+v, want error kind %s, last identity kept, no credentials", o, tc.kind)
				}
			}
			if got := value(t, tw.errors.WithLabelValues(tc.kind)); got != 2 {
				t.Errorf("patchd_imds_errors_total{kind=%q} = %v, want 2", tc.kind, got)
			}
			for _, k := range Kinds {
				if got := value(t, tw.errors.WithLabelValues(k)); k != tc.kind && got != 0 {
					t.Errorf("patchd_imds_errors_total{kind=%q} = %v, want 0", k, got)
				}
			}
			f.set("", profA)
			tw.SetConfig(endpoint, time.Minute, 300*time.Millisecond)
			if o := tw.Poll(ctx); !o.Known || o.Changed || o.Identity != profA {
				t.Fatalf("poll after recovery = %+v, want profile a and no change", o)
			}
			if n := tw.changeCount(); n != 0 {
				t.Errorf("%d role changes reported, want 0", n)
			}
			if got := value(t, tw.Watcher.changes); got != 0 {
				t.Errorf("patchd_role_changes_total = %v, want 0", got)
			}
		})
	}
}

// A data request answered 401 (IMDS restarted, token unknown) makes the SDK
// fetch a new token and succeed.
func TestTokenRefreshedOn401(t *testing.T) {
	f, srv := newFakeIMDS(t, profA)
	tw := newTestWatcher(t, srv.URL, t.TempDir(), clockwork.NewFakeClock())
	ctx := context.Background()
	tw.Poll(ctx)
	if n := f.tokenCount(); n != 1 {
		t.Fatalf("%d tokens fetched for the first poll, want 1 (reused across its reads)", n)
	}
	f.mu.Lock()
	f.token = "forgotten"
	f.mu.Unlock()
	if o := tw.Poll(ctx); !o.Known || o.Identity != profA {
		t.Fatalf("poll after token loss = %+v, want profile a", o)
	}
	if n := f.tokenCount(); n != 2 {
		t.Fatalf("%d tokens fetched, want 2 (one refresh after the 401)", n)
	}
}

func TestRoleChangeSurvivesRestart(t *testing.T) {
	f, srv := newFakeIMDS(t, profA)
	state := t.TempDir()
	ctx := context.Background()
	tw := newTestWatcher(t, srv.URL, state, clockwork.NewFakeClock())
	if o := tw.Poll(ctx); o.Changed {
		t.Fatalf("baseline reported as a change: %+v", o)
	}
	// patchd is down while the profile is replaced.
	f.set("", profB)
	tw2 := newTestWatcher(t, srv.URL, state, clockwork.NewFakeClock())
	if got := value(t, tw2.info.WithLabelValues(profA.InstanceProfileArn, profA.Role)); got != 1 {
		t.Errorf("patchd_role_info not restored from role.json before the first poll")
	}
	o := tw2.Poll(ctx)
	if !o.Changed || o.Previous != profA || o.Identity != profB {
		t.Fatalf("first poll after restart = %+v, want a change from a to b", o)
	}
	if o := tw2.Poll(ctx); o.Changed {
		t.Fatalf("second poll reported the same change again: %+v", o)
	}
	if got := value(t, tw2.Watcher.changes); got != 1 {
		t.Errorf("patchd_role_changes_total = %v, want 1", got)
	}
	if got := gaugeSeries(t, tw2.reg, "patchd_role_info"); got != `{instance_profile="arn:aws:iam::123456789012:instance-profile/b",role="role-b"} 1` {
		t.Errorf("patchd_role_info = %s, want the one series of profile b", got)
	}
}

func TestAttachWhereNone(t *testing.T) {
	f, srv := newFakeIMDS(t, Identity{})
	tw := newTestWatcher(t, srv.URL, t.TempDir(), clockwork.NewFakeClock())
	ctx := context.Background()
	if o := tw.Poll(ctx); !o.Known || o.Identity.Attached() || o.Changed || o.ServesCredentials {
		t.Fatalf("poll without profile = %+v, want known, none, no change", o)
	}
	f.set("", profA)
	if o := tw.Poll(ctx); !o.Changed || !strings.Contains(o.Reason, "attached") {
		t.Fatalf("poll after attach = %+v, want a change (attached where none)", o)
	}
}

// Without an endpoint in the configuration, AWS_EC2_METADATA_SERVICE_ENDPOINT
// names the IMDS as it does for the AWS CLI and SDKs; a configured one wins.
func TestEndpointFromEnvironment(t *testing.T) {
	_, srv := newFakeIMDS(t, profA)
	t.Setenv(EndpointEnv, srv.URL)
	tw := newTestWatcher(t, "", t.TempDir(), clockwork.NewFakeClock())
	if o := tw.Poll(context.Background()); !o.Known || o.Identity != profA {
		t.Fatalf("poll with the endpoint from %s = %+v, want profile a", EndpointEnv, o)
	}
	// A configured endpoint wins: this one refuses connections.
	t.Setenv(EndpointEnv, srv.URL)
	tw = newTestWatcher(t, "http://127.0.0.1:9", t.TempDir(), clockwork.NewFakeClock())
	if o := tw.Poll(context.Background()); o.Known {
		t.Fatalf("poll with a configured endpoint = %+v, want it used (unknown: refused)", o)
	}
}

// Run polls at start and then within one poll interval (jitter only
// shortens the wait); PollSoon polls at once.
func TestRunPollsWithinInterval(t *testing.T) {
	f, srv := newFakeIMDS(t, profA)
	clock := clockwork.NewFakeClock()
	tw := newTestWatcher(t, srv.URL, t.TempDir(), clock)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- tw.Run(ctx) }()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Error(err)
		}
	}()
	next := func() Observation {
		t.Helper()
		select {
		case o := <-tw.ch:
			return o
		case <-time.After(30 * time.Second):
			t.Fatal("no poll")
		}
		return Observation{}
	}
	wait := func() {
		t.Helper()
		bctx, bcancel := context.WithTimeout(ctx, 30*time.Second)
		defer bcancel()
		if err := clock.BlockUntilContext(bctx, 1); err != nil {
			t.Fatalf("watcher never waited for its next poll: %v", err)
		}
	}
	if o := next(); o.Changed || o.Identity != profA {
		t.Fatalf("first poll = %+v, want baseline a", o)
	}
	wait()
	f.set("", profB)
	// Just under one interval, minus the largest jitter, must not be enough...
	clock.Advance(time.Minute - time.Minute/10 - time.Second)
	select {
	case o := <-tw.ch:
		t.Fatalf("polled before the jittered interval: %+v", o)
	default:
	}
	// ...and one whole interval always is.
	clock.Advance(time.Minute/10 + time.Second)
	if o := next(); !o.Changed {
		t.Fatalf("second poll = %+v, want the change", o)
	}
	wait()
	tw.PollSoon()
	if o := next(); o.Changed || o.Identity != profB {
		t.Fatalf("poll on request = %+v, want b and no change", o)
	}
}

// value reads a counter or gauge.
func value(t *testing.T, m prometheus.Metric) float64 {
	t.Helper()
	var pb dto.Metric
	if err := m.Write(&pb); err != nil {
		t.Fatal(err)
	}
	if pb.Counter != nil {
		return pb.Counter.GetValue()
	}
	return pb.Gauge.GetValue()
}

// gaugeSeries renders every series of a gauge family as {labels} value,
// joined by "; ".
func gaugeSeries(t *testing.T, g prometheus.Gatherer, name string) string {
	t.Helper()
	mfs, err := g.Gather()
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.Metric {
			var ls []string
			for _, l := range m.Label {
				ls = append(ls, fmt.Sprintf("%s=%q", l.GetName(), l.GetValue()))
			}
			out = append(out, fmt.Sprintf("{%s} %v", strings.Join(ls, ","), m.Gauge.GetValue()))
		}
	}
	return strings.Join(out, "; ")
}

// BenchmarkPoll is one poll against a local IMDSv2 (token cached): what a
// poll costs patchd every minute.
func BenchmarkPoll(b *testing.B) {
	f := &fakeIMDS{id: profA, release: make(chan struct{})}
	srv := httptest.NewServer(f)
	defer srv.Close()
	defer close(f.release)
	w, err := New(Options{Endpoint: srv.URL, PollInterval: time.Minute, Timeout: time.Second, StateDir: b.TempDir()})
	if err != nil {
		b.Fatal(err)
	}
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		if o := w.Poll(ctx); !o.Known {
			b.Fatal(o.Err)
		}
	}
}
