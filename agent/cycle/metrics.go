package cycle

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/patchd/patchd/agent/ledger"
)

type metrics struct {
	active, started, lastEnd, lastSuccess, lastSuccessEnd prometheus.Gauge
	phase                                                 *prometheus.GaugeVec
	total                                                 *prometheus.CounterVec
	packages                                              *prometheus.GaugeVec
}

var metricPhases = []string{PhasePrePatch, PhaseWaiting, PhasePreReboot, PhasePostPatch}

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	m := &metrics{
		active: prometheus.NewGauge(prometheus.GaugeOpts{Name: "patchd_cycle_active",
			Help: "Whether a patch cycle is open (1) or not (0)."}),
		started: prometheus.NewGauge(prometheus.GaugeOpts{Name: "patchd_cycle_started_timestamp_seconds",
			Help: "When the open patch cycle started; 0 when none is open."}),
		lastEnd: prometheus.NewGauge(prometheus.GaugeOpts{Name: "patchd_last_cycle_end_timestamp_seconds",
			Help: "When the last patch cycle closed; 0 before the first."}),
		lastSuccess: prometheus.NewGauge(prometheus.GaugeOpts{Name: "patchd_last_cycle_success",
			Help: "Whether the last patch cycle's result was success (1) or not (0); hook failures are in patchd_hook_runs_total."}),
		lastSuccessEnd: prometheus.NewGauge(prometheus.GaugeOpts{Name: "patchd_last_successful_cycle_end_timestamp_seconds",
			Help: "When the last successful patch cycle closed; 0 before the first."}),
		phase: prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "patchd_cycle_phase",
			Help: "1 for the phase the open patch cycle is in (waiting: the patch runs), 0 for the others."}, []string{"phase"}),
		total: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "patchd_cycles_total",
			Help: "Patch cycles closed, by trigger and result; kept across restarts."}, []string{"trigger", "result"}),
		packages: prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "patchd_packages_changed_last_cycle",
			Help: "Packages installed, upgraded and removed by the last patch cycle."}, []string{"change"}),
	}
	if reg != nil {
		for _, c := range []prometheus.Collector{m.active, m.started, m.lastEnd, m.lastSuccess, m.lastSuccessEnd, m.phase, m.total, m.packages} {
			if err := reg.Register(c); err != nil {
				return nil, err
			}
		}
	}
	for _, t := range Triggers {
		for _, r := range Results {
			m.total.WithLabelValues(t, r)
		}
	}
	for _, p := range metricPhases {
		m.phase.WithLabelValues(p)
	}
	for _, k := range []string{"installed", "upgraded", "removed"} {
		m.packages.WithLabelValues(k)
	}
	return m, nil
}

// restore sets the metrics from the state file after a start.
func (m *metrics) restore(st *State) {
	for k, v := range st.Totals {
		for _, t := range Triggers {
			for _, r := range Results {
				if k == t+"/"+r {
					m.total.WithLabelValues(t, r).Add(v)
				}
			}
		}
	}
	if st.Last != nil {
		m.setLast(st.Last, st)
	}
	if c := st.Current; c != nil {
		m.opened(c)
		m.setPhase(PhaseWaiting)
	}
}

func (m *metrics) opened(c *Cycle) {
	m.active.Set(1)
	m.started.Set(float64(c.Opened.UnixNano()) / 1e9)
}

func (m *metrics) setPhase(p string) {
	for _, q := range metricPhases {
		v := 0.0
		if q == p {
			v = 1
		}
		m.phase.WithLabelValues(q).Set(v)
	}
}

func (m *metrics) hookDone() {}

func (m *metrics) closed(trigger, result string, e *ledger.Entry, st *State) {
	m.active.Set(0)
	m.started.Set(0)
	m.setPhase("")
	m.total.WithLabelValues(trigger, result).Inc()
	m.setLast(e, st)
}

func (m *metrics) setLast(e *ledger.Entry, st *State) {
	m.lastEnd.Set(float64(e.Closed.UnixNano()) / 1e9)
	if e.Result == ResultSuccess {
		m.lastSuccess.Set(1)
	} else {
		m.lastSuccess.Set(0)
	}
	if !st.LastSuccessfulEnd.IsZero() {
		m.lastSuccessEnd.Set(float64(st.LastSuccessfulEnd.UnixNano()) / 1e9)
	}
	for k, v := range e.Packages.Counts() {
		m.packages.WithLabelValues(k).Set(float64(v))
	}
}
