// Package hookmetrics is the Prometheus side of package hooks: the series
// of the runner and of the watcher (docs/metrics.md). It is a package of
// its own so that the CLI, which runs hooks too (`patchd hooks run`), does
// not link client_golang, whose start-up it would pay on every command.
package hookmetrics

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/patchd/patchd/hooks"
)

// Metrics is a hooks.Recorder that keeps the hooks' series. No hook name is
// a label: hooks come and go, and a series per file would grow without
// bound.
type Metrics struct {
	runs        *prometheus.CounterVec
	duration    *prometheus.HistogramVec
	lastRun     *prometheus.GaugeVec
	lastSuccess *prometheus.GaugeVec
	refused     *prometheus.GaugeVec
}

var _ hooks.Recorder = (*Metrics)(nil)

// runResults are the results a hook run is counted under.
var runResults = []hooks.Outcome{hooks.Success, hooks.Failed, hooks.TimedOut, hooks.Refusal}

// New returns the hooks' metrics, registered on reg (nil: not registered).
// Give the same Metrics to the runner and the watcher.
func New(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		runs: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "patchd_hook_runs_total",
			Help: "Hook runs by phase and result (success, failed, timed_out, refused).",
		}, []string{"phase", "result"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "patchd_hook_duration_seconds",
			Help: "Wall time of one hook run, by phase.",
			// From a trivial script (10 ms) to a slow drain (30 min).
			// Few, wide buckets: every series counts against the per-host budget
			// of 150 (docs/metrics.md), and what operators ask of a hook is "quick, normal, slow,
			// or past the default timeout" (5 min): three bounds answer that.
			// (A 2 min and a 10 min bound gave way to the fleet metrics.)
			Buckets: []float64{5, 30, 300},
		}, []string{"phase"}),
		lastRun: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "patchd_hook_last_run_timestamp_seconds",
			Help: "When the last run of a phase's hooks ended (0: not since patchd started).",
		}, []string{"phase"}),
		lastSuccess: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "patchd_hook_last_run_success",
			Help: "Whether every hook of the phase's last run succeeded (1) or not (0).",
		}, []string{"phase"}),
		refused: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "patchd_hooks_refused",
			Help: "Hooks refused as unsafe (owner, writable by others, unsafe directory), by phase; they never run.",
		}, []string{"phase"}),
	}
	// Every series exists from the start, so rate() and absent() work
	// before the first patch run.
	for _, p := range hooks.Phases {
		for _, r := range runResults {
			m.runs.WithLabelValues(string(p), string(r))
		}
		m.duration.WithLabelValues(string(p))
		m.lastRun.WithLabelValues(string(p))
		m.lastSuccess.WithLabelValues(string(p))
		m.refused.WithLabelValues(string(p))
	}
	if reg != nil {
		reg.MustRegister(m.runs, m.duration, m.lastRun, m.lastSuccess, m.refused)
	}
	return m
}

// HookRun counts the run under its result; a refused hook never started,
// so it has no duration.
func (m *Metrics) HookRun(res hooks.Result) {
	m.runs.WithLabelValues(string(res.Phase), string(res.Outcome)).Inc()
	if res.Outcome != hooks.Refusal {
		m.duration.WithLabelValues(string(res.Phase)).Observe(res.Duration.Seconds())
	}
}

// PhaseRun sets the phase's last-run gauges.
func (m *Metrics) PhaseRun(p hooks.Phase, ok bool) {
	m.lastRun.WithLabelValues(string(p)).Set(float64(time.Now().UnixNano()) / 1e9)
	v := 0.0
	if ok {
		v = 1
	}
	m.lastSuccess.WithLabelValues(string(p)).Set(v)
}

// Refused sets patchd_hooks_refused{phase}.
func (m *Metrics) Refused(p hooks.Phase, n int) {
	m.refused.WithLabelValues(string(p)).Set(float64(n))
}
