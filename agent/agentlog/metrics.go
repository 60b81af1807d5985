package agentlog

import (
	"sync"

	"github.com/prometheus/client_golang/prometheus"
)

// Metrics are the agent log tail's series. Labels stay bounded: file is one
// of the configured names, level one of the known levels or "-", kind one
// of Kinds; the agent version appears only in the one _info series.
type Metrics struct {
	lines     *prometheus.CounterVec
	events    *prometheus.CounterVec
	lastEvent *prometheus.GaugeVec
	truncated prometheus.Counter
	version   *prometheus.GaugeVec
	rotations *prometheus.CounterVec

	mu         sync.Mutex
	curVersion string
}

// NewMetrics registers the series on reg, with zeros for every file, level
// and kind so that rate() and absent() work from the first scrape.
func NewMetrics(reg prometheus.Registerer, files []string) *Metrics {
	m := &Metrics{
		lines: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "patchd_agent_log_lines_total",
			Help: "Physical lines read from amazon-ssm-agent's logs, by file and level token (- for none).",
		}, []string{"file", "level"}),
		events: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "patchd_agent_log_events_total",
			Help: "Classified agent log entries by event kind.",
		}, []string{"kind"}),
		lastEvent: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "patchd_agent_log_last_event_timestamp_seconds",
			Help: "Time of the last agent log entry of each kind (the entry's own timestamp when it has one).",
		}, []string{"kind"}),
		truncated: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "patchd_agent_log_truncated_lines_total",
			Help: "Agent log lines longer than 64 KiB, cut to 64 KiB.",
		}),
		version: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "patchd_agent_version_info",
			Help: "amazon-ssm-agent's version from its last start banner; always 1.",
		}, []string{"version"}),
		rotations: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "patchd_agent_log_rotations_total",
			Help: "Rotations seen per followed file: renamed, deleted or truncated under the reader.",
		}, []string{"file"}),
	}
	reg.MustRegister(m.lines, m.events, m.lastEvent, m.truncated, m.version, m.rotations)
	for _, f := range files {
		for _, lv := range levels {
			m.lines.WithLabelValues(f, lv)
		}
		m.lines.WithLabelValues(f, "-")
		m.rotations.WithLabelValues(f)
	}
	for _, k := range Kinds {
		m.events.WithLabelValues(string(k))
	}
	return m
}

// entry counts one classified entry of the configured file name.
func (m *Metrics) entry(file string, e *Entry) {
	if m == nil {
		return
	}
	m.lines.WithLabelValues(file, e.Level).Inc()
	if e.Lines > 1 {
		m.lines.WithLabelValues(file, "-").Add(float64(e.Lines - 1))
	}
}

// event counts an event handed to the sink.
func (m *Metrics) event(ev *Event, nowUnix float64) {
	if m == nil {
		return
	}
	m.events.WithLabelValues(string(ev.Kind)).Inc()
	ts := nowUnix
	if !ev.Time.IsZero() {
		ts = float64(ev.Time.UnixNano()) / 1e9
	}
	m.lastEvent.WithLabelValues(string(ev.Kind)).Set(ts)
	if ev.AgentVersion != "" {
		m.mu.Lock()
		if ev.AgentVersion != m.curVersion {
			// One series: the version now running, not every one seen.
			m.version.Reset()
			m.version.WithLabelValues(ev.AgentVersion).Set(1)
			m.curVersion = ev.AgentVersion
		}
		m.mu.Unlock()
	}
}

func (m *Metrics) truncatedLine() {
	if m != nil {
		m.truncated.Inc()
	}
}

func (m *Metrics) rotation(file string) {
	if m != nil {
		m.rotations.WithLabelValues(file).Inc()
	}
}
