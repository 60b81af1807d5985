// Package uploads keeps what patchd last delivered to Systems Manager, by
// kind (inventory: the custom inventory files the agent uploads; compliance:
// PutComplianceItems), for the metrics and for `patchd status`. Both
// deliveries report here, so an operator reads one place for both.
package uploads

import (
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/patchd/patchd/agent/uploads/uploadstatus"
)

// The kinds, reasons and Status are defined in uploadstatus, which the CLI
// links without this package's metrics.
const (
	KindInventory  = uploadstatus.KindInventory
	KindCompliance = uploadstatus.KindCompliance

	ReasonNoAgentFolder = uploadstatus.ReasonNoAgentFolder
	ReasonWriteError    = uploadstatus.ReasonWriteError
	ReasonThrottled     = uploadstatus.ReasonThrottled
	ReasonServerError   = uploadstatus.ReasonServerError
	ReasonNetwork       = uploadstatus.ReasonNetwork
	ReasonAccessDenied  = uploadstatus.ReasonAccessDenied
	ReasonInvalid       = uploadstatus.ReasonInvalid
	ReasonCredentials   = uploadstatus.ReasonCredentials
)

// Status is the last delivery of one kind.
type Status = uploadstatus.Status

// Tracker records deliveries. Its methods are safe from any goroutine.
type Tracker struct {
	mu       sync.Mutex
	st       map[string]*Status
	last     *prometheus.GaugeVec
	failures *prometheus.CounterVec
	pending  prometheus.Gauge
}

// New registers the metrics on reg (nil: none) and returns a Tracker.
func New(reg prometheus.Registerer) (*Tracker, error) {
	t := &Tracker{
		st: map[string]*Status{},
		last: prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "patchd_ssm_report_last_success_timestamp_seconds",
			Help: "When patchd last delivered its results to Systems Manager, by kind (inventory: files written for the agent; compliance: PutComplianceItems accepted); 0: not since start."}, []string{"kind"}),
		failures: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "patchd_ssm_report_failures_total",
			Help: "Failed deliveries to Systems Manager, by kind and reason (no_agent_folder, write_error, throttled, server_error, network, access_denied, invalid, credentials)."}, []string{"kind", "reason"}),
		pending: prometheus.NewGauge(prometheus.GaugeOpts{Name: "patchd_ssm_report_outbox_size",
			Help: "Compliance reports waiting in the outbox to be sent."}),
	}
	if reg != nil {
		for _, c := range []prometheus.Collector{t.last, t.failures, t.pending} {
			if err := reg.Register(c); err != nil {
				return nil, err
			}
		}
	}
	for _, k := range []string{KindInventory, KindCompliance} {
		t.last.WithLabelValues(k)
		t.st[k] = &Status{Kind: k}
	}
	return t, nil
}

// Success records a delivery of kind at at.
func (t *Tracker) Success(kind string, at time.Time) {
	t.mu.Lock()
	defer t.mu.Unlock()
	s := t.status(kind)
	s.LastSuccess, s.Reason, s.Error = at, "", ""
	t.last.WithLabelValues(kind).Set(float64(at.UnixNano()) / 1e9)
}

// Failure records a failed delivery of kind.
func (t *Tracker) Failure(kind, reason string, err error, at time.Time) {
	t.mu.Lock()
	defer t.mu.Unlock()
	s := t.status(kind)
	s.LastFailure, s.Reason = at, reason
	if err != nil {
		s.Error = err.Error()
	}
	t.failures.WithLabelValues(kind, reason).Inc()
}

// Disable records that kind is switched off, and why.
func (t *Tracker) Disable(kind, why string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.status(kind).Off = why
}

// SetPending records how many reports of kind wait to be delivered.
func (t *Tracker) SetPending(kind string, n int) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.status(kind).Pending = n
	if kind == KindCompliance {
		t.pending.Set(float64(n))
	}
}

// Snapshot returns every kind's status, inventory first.
func (t *Tracker) Snapshot() []Status {
	if t == nil {
		return nil
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	return []Status{*t.status(KindInventory), *t.status(KindCompliance)}
}

func (t *Tracker) status(kind string) *Status {
	s := t.st[kind]
	if s == nil {
		s = &Status{Kind: kind}
		t.st[kind] = s
	}
	return s
}
