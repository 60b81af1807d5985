package hooks

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// metrics are the runner's series. No hook name is a label: hooks come and
// go, and a series per file would grow without bound.
type metrics struct {
	runs        *prometheus.CounterVec
	duration    *prometheus.HistogramVec
	lastRun     *prometheus.GaugeVec
	lastSuccess *prometheus.GaugeVec
}

// runResults are the results a hook run is counted under.
var runResults = []Outcome{Success, Failed, TimedOut, Refusal}

func newMetrics() *metrics {
	m := &metrics{
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
	}
	// Every series exists from the start, so rate() and absent() work
	// before the first patch run.
	for _, p := range Phases {
		for _, r := range runResults {
			m.runs.WithLabelValues(string(p), string(r))
		}
		m.duration.WithLabelValues(string(p))
		m.lastRun.WithLabelValues(string(p))
		m.lastSuccess.WithLabelValues(string(p))
	}
	return m
}

func (m *metrics) register(reg prometheus.Registerer) {
	reg.MustRegister(m.runs, m.duration, m.lastRun, m.lastSuccess)
}

// recordPhase notes a phase run that ran or refused at least one hook.
func (m *metrics) recordPhase(p Phase, results []Result) {
	if len(results) == 0 {
		return
	}
	m.lastRun.WithLabelValues(string(p)).Set(float64(time.Now().UnixNano()) / 1e9)
	ok := 0.0
	if PhaseSucceeded(results) {
		ok = 1
	}
	m.lastSuccess.WithLabelValues(string(p)).Set(ok)
}

// RecordPhase lets a caller that reran hooks itself (post-patch retries)
// update the per-phase last-run gauges with the final results.
func (r *Runner) RecordPhase(p Phase, results []Result) { r.m.recordPhase(p, results) }
