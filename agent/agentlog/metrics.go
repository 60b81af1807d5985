package agentlog

import (
	"strings"
	"sync"
	"time"
	"unsafe"

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

	// Resolved series, so that counting a line is no label hashing.
	perFile  map[string]*lineCounters
	perKind  []prometheus.Counter
	lastKind []prometheus.Gauge

	// Counts since the last publish, kept by the Tailer's goroutine and
	// added to the series once per pass: three atomic updates per entry
	// were a tenth of the tailer's time. A Metrics serves one Tailer.
	kindPend []uint64
	lastPend []time.Time

	mu         sync.Mutex
	curVersion string
}

// levelIndex maps a level token to its slot in perFile ("-" is last).
func levelIndex(level string) int {
	// The levels' first letters differ: a table picks the slot and one
	// comparison checks it, where a switch over six strings took a
	// branch per entry that the mix of levels mispredicts.
	if level != "" {
		if i := levelByFirst[level[0]]; i > 0 && sameString(levels[i-1], level) {
			return int(i - 1)
		}
	}
	return len(levels)
}

// levelByFirst is 1 + the index in levels of the level beginning with a
// byte, 0 for none.
var levelByFirst = func() (t [256]uint8) {
	for i, lv := range levels {
		t[lv[0]] = uint8(i + 1)
	}
	return t
}()

// kindSlot is the index of k in Kinds, -1 for none. A table by the kind's
// length and first byte and one comparison, instead of a map lookup, which
// hashed the kind, or a switch, whose branches the mix of kinds
// mispredicts.
func kindSlot(k Kind) int {
	if k != "" {
		if i := kindByShape[kindShape(k)]; i > 0 && sameString(string(Kinds[i-1]), string(k)) {
			return int(i - 1)
		}
	}
	return -1
}

// sameString is a == b, without a call when both are the same constant,
// as an entry's level and kind are: the compiler's == calls memequal even
// then.
func sameString(a, b string) bool {
	return len(a) == len(b) && (unsafe.StringData(a) == unsafe.StringData(b) || a == b)
}

// kindMult makes kindShape tell every kind of Kinds apart.
var kindMult, kindByShape = func() (int, [64]uint8) {
	for mult := 1; mult < 64; mult++ {
		var t [64]uint8
		ok := true
		for i, k := range Kinds {
			sh := (len(k)*mult + int(k[0])) & 63
			if t[sh] != 0 {
				ok = false
				break
			}
			t[sh] = uint8(i + 1)
		}
		if ok {
			return mult, t
		}
	}
	panic("agentlog: no table tells the kinds apart") // a programming error, at init
}()

func kindShape(k Kind) int { return (len(k)*kindMult + int(k[0])) & 63 }

// NewMetrics registers the series on reg, with zeros for every file, level
// and kind so that rate() and absent() work from the first scrape.
func NewMetrics(reg prometheus.Registerer, files []string) *Metrics {
	m := &Metrics{
		lines: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "patchd_agent_log_lines_total",
			Help: "Physical lines read from amazon-ssm-agent's logs, by file and level token (TRACE counted as DEBUG, - for none).",
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
	m.perFile = map[string]*lineCounters{}
	for _, f := range files {
		var c lineCounters
		for i, lv := range levels {
			// TRACE lines count as DEBUG: both appear only when an operator
			// turns the agent's logging up, and the two series they would
			// take are the per-host budget's (docs/metrics.md).
			if lv == "TRACE" {
				lv = "DEBUG"
			}
			c.c[i] = m.lines.WithLabelValues(f, lv)
		}
		c.c[len(levels)] = m.lines.WithLabelValues(f, "-")
		m.perFile[f] = &c
		m.rotations.WithLabelValues(f)
	}
	m.kindPend, m.lastPend = make([]uint64, len(Kinds)), make([]time.Time, len(Kinds))
	for _, k := range Kinds {
		m.perKind = append(m.perKind, m.events.WithLabelValues(string(k)))
		m.lastKind = append(m.lastKind, m.lastEvent.WithLabelValues(string(k)))
	}
	return m
}

// lineCounters are one file's line counters by level, resolved once, and
// the lines counted since the last publish.
type lineCounters struct {
	c    [len(levels) + 1]prometheus.Counter
	pend [len(levels) + 1]uint64
}

// fileLines returns the counters of a configured file name, nil for others
// (no unbounded label values) or without metrics.
func (m *Metrics) fileLines(file string) *lineCounters {
	if m == nil {
		return nil
	}
	return m.perFile[file]
}

// entry counts one classified entry's lines (published later).
func (c *lineCounters) entry(e *Entry) {
	if c == nil {
		return
	}
	c.pend[levelIndex(e.Level)]++
	if e.Lines > 1 {
		c.pend[len(levels)] += uint64(e.Lines - 1)
	}
}

// publish adds what was counted since the last call to the series. The
// Tailer calls it after every pass, before it waits again.
func (m *Metrics) publish() {
	if m == nil {
		return
	}
	for _, c := range m.perFile {
		for i, n := range c.pend {
			if n > 0 {
				c.c[i].Add(float64(n))
				c.pend[i] = 0
			}
		}
	}
	for i, n := range m.kindPend {
		if n == 0 {
			continue
		}
		m.perKind[i].Add(float64(n))
		m.lastKind[i].Set(float64(m.lastPend[i].UnixNano()) / 1e9)
		m.kindPend[i] = 0
	}
}

// event counts an event handed to the sink.
func (m *Metrics) event(ev *Event, now func() time.Time) {
	if m == nil {
		return
	}
	i := kindSlot(ev.Kind)
	if i < 0 {
		return
	}
	m.kindPend[i]++
	t := ev.Time
	if t.IsZero() {
		t = now() // only then: reading the clock per line costs
	}
	m.lastPend[i] = t
	if ev.AgentVersion != "" {
		m.mu.Lock()
		if ev.AgentVersion != m.curVersion {
			// One series: the version now running, not every one seen.
			// The label and curVersion outlive the event: a copy
			// (Event's strings are the classifier's buffer).
			v := strings.Clone(ev.AgentVersion)
			m.version.Reset()
			m.version.WithLabelValues(v).Set(1)
			m.curVersion = v
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
