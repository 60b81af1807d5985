package hookmetrics

import (
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/patchd/patchd/hooks"
)

// TestSeriesExistFromTheStart: every phase × result series, and each
// phase's gauges, exist before the first run, so rate() and absent() work.
func TestSeriesExistFromTheStart(t *testing.T) {
	reg := prometheus.NewRegistry()
	New(reg)
	want := map[string]int{
		"patchd_hook_runs_total":                 len(hooks.Phases) * len(runResults),
		"patchd_hook_duration_seconds":           len(hooks.Phases),
		"patchd_hook_last_run_timestamp_seconds": len(hooks.Phases),
		"patchd_hook_last_run_success":           len(hooks.Phases),
		"patchd_hooks_refused":                   len(hooks.Phases),
	}
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]int{}
	for _, mf := range mfs {
		got[mf.GetName()] = len(mf.Metric)
	}
	for name, n := range want {
		if got[name] != n {
			t.Errorf("%s has %d series, want %d", name, got[name], n)
		}
	}
	if len(got) != len(want) {
		t.Errorf("families %v, want those of %v", got, want)
	}
}

// TestRecords: a run is counted under its result and timed, a refusal only
// counted (it never started); a phase run sets its gauges; the watcher's
// count is the gauge.
func TestRecords(t *testing.T) {
	m := New(nil)
	m.HookRun(hooks.Result{Phase: hooks.PrePatch, Outcome: hooks.Success, Duration: 2 * time.Second})
	m.HookRun(hooks.Result{Phase: hooks.PrePatch, Outcome: hooks.Failed, Duration: time.Second})
	m.HookRun(hooks.Result{Phase: hooks.PrePatch, Outcome: hooks.Refusal})
	for o, want := range map[hooks.Outcome]float64{hooks.Success: 1, hooks.Failed: 1, hooks.Refusal: 1, hooks.TimedOut: 0} {
		if got := read(t, m.runs.WithLabelValues("pre-patch", string(o))).GetCounter().GetValue(); got != want {
			t.Errorf("runs{result=%s} = %v, want %v", o, got, want)
		}
	}
	h := m.duration.WithLabelValues("pre-patch").(prometheus.Metric)
	if got := read(t, h).GetHistogram().GetSampleCount(); got != 2 {
		t.Errorf("duration observations = %d, want 2 (a refused hook has none)", got)
	}

	gauge := func(g *prometheus.GaugeVec, phase hooks.Phase) float64 {
		return read(t, g.WithLabelValues(string(phase))).GetGauge().GetValue()
	}
	before := float64(time.Now().Add(-time.Minute).Unix())
	m.PhaseRun(hooks.PostPatch, false)
	if got := gauge(m.lastSuccess, hooks.PostPatch); got != 0 {
		t.Errorf("last_run_success = %v, want 0", got)
	}
	if got := gauge(m.lastRun, hooks.PostPatch); got < before {
		t.Errorf("last_run_timestamp = %v, want about now", got)
	}
	m.PhaseRun(hooks.PostPatch, true)
	if got := gauge(m.lastSuccess, hooks.PostPatch); got != 1 {
		t.Errorf("last_run_success = %v, want 1", got)
	}

	m.Refused(hooks.PreReboot, 3)
	if got := gauge(m.refused, hooks.PreReboot); got != 3 {
		t.Errorf("patchd_hooks_refused = %v, want 3", got)
	}
}

// read returns one series' current value.
func read(t *testing.T, m prometheus.Metric) *dto.Metric {
	t.Helper()
	var d dto.Metric
	if err := m.Write(&d); err != nil {
		t.Fatal(err)
	}
	return &d
}
