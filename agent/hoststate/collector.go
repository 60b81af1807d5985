package hoststate

import (
	"encoding/json"
	"sync"

	"github.com/prometheus/client_golang/prometheus"
)

func jsonUnmarshal(data []byte, v any) error { return json.Unmarshal(data, v) }

func desc(name, help string, labels ...string) *prometheus.Desc {
	return prometheus.NewDesc("patchd_"+name, help, labels, nil)
}

// descs are the collector's metric descriptions, built on first use (a
// scrape or a registration), not at start-up: CLI commands never need them.
type descs struct {
	rebootRequired, rebootSince, updatesPending, kernelLatest *prometheus.Desc
	summaryPackages, summaryNonCompliant, summaryEnd          *prometheus.Desc
	// checks are the per-check bookkeeping series, in CheckAll's order.
	checks []checkDesc
}

type checkDesc struct {
	name       string
	last, errs *prometheus.Desc
}

var hostDescs = sync.OnceValue(func() *descs {
	return &descs{
		rebootRequired: desc("reboot_required",
			"Whether the host needs a reboot to finish applying updates (Debian/Ubuntu: the reboot marker file; RHEL/Amazon Linux: needs-restarting -r)."),
		rebootSince: desc("reboot_required_since_timestamp_seconds",
			"When the pending reboot became required (0 when none is); kept across patchd restarts."),
		updatesPending: desc("updates_pending",
			"Package updates available from the local package cache, all of them or only security ones.", "kind"),
		kernelLatest: desc("kernel_running_is_latest",
			"Whether the running kernel is the newest installed kernel package (0: a reboot would change kernel)."),
		summaryPackages: desc("aws_patch_packages",
			"Package counts of the last AWS-RunPatchBaseline Scan or Install on this host, by patch state.", "state"),
		summaryNonCompliant: desc("aws_patch_noncompliant_packages",
			"Non-compliant package counts of the last AWS-RunPatchBaseline operation, by classification.", "class"),
		summaryEnd: desc("aws_patch_operation_end_timestamp_seconds",
			"End time of the AWS-RunPatchBaseline operation the summary describes."),
		checks: []checkDesc{
			{"reboot_required",
				desc("reboot_required_last_check_timestamp_seconds", "Time of the last successful reboot-required check."),
				desc("reboot_required_check_errors_total", "Reboot-required checks that failed (tool missing, unexpected output, timeout).")},
			{"updates_pending",
				desc("updates_pending_last_check_timestamp_seconds", "Time of the last successful pending-updates check."),
				desc("updates_pending_check_errors_total", "Pending-updates checks that failed (package manager error, no cache, timeout).")},
			{"kernel",
				desc("kernel_last_check_timestamp_seconds", "Time of the last successful running-kernel check."),
				desc("kernel_check_errors_total", "Running-kernel checks that failed.")},
			{"aws_patch",
				desc("aws_patch_last_check_timestamp_seconds", "Time the AWS patch summary file was last read successfully."),
				desc("aws_patch_check_errors_total", "Reads of the AWS patch summary file that failed: missing, unreadable or of an unknown schema.")},
		},
	}
})

// Describe implements prometheus.Collector.
func (h *HostState) Describe(ch chan<- *prometheus.Desc) {
	d := hostDescs()
	for _, d := range []*prometheus.Desc{d.rebootRequired, d.rebootSince, d.updatesPending, d.kernelLatest,
		d.summaryPackages, d.summaryNonCompliant, d.summaryEnd} {
		ch <- d
	}
	for _, c := range d.checks {
		ch <- c.last
		ch <- c.errs
	}
}

// Collect implements prometheus.Collector from the cache only. A value is
// exported once its check has succeeded; until then only the error counter
// speaks, so "tool missing" never reads as "no reboot needed".
func (h *HostState) Collect(ch chan<- prometheus.Metric) {
	h.mu.Lock()
	defer h.mu.Unlock()
	d := hostDescs()
	gauge := func(d *prometheus.Desc, v float64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, labels...)
	}
	if h.reboot.ok {
		gauge(d.rebootRequired, b2f(h.rebootRequired))
		since := 0.0
		if !h.rebootSince.IsZero() {
			since = float64(h.rebootSince.UnixNano()) / 1e9
		}
		gauge(d.rebootSince, since)
	}
	if h.updates.ok {
		gauge(d.updatesPending, float64(h.pending.All), "all")
		gauge(d.updatesPending, float64(h.pending.Security), "security")
	}
	if h.kernel.ok {
		gauge(d.kernelLatest, b2f(h.kernelLatest))
	}
	if h.summary.ok {
		for _, st := range PatchStates {
			gauge(d.summaryPackages, h.patchSummary.States[st.Label], st.Label)
		}
		for _, cl := range NonCompliantClasses {
			gauge(d.summaryNonCompliant, h.patchSummary.NonCompliant[cl.Label], cl.Label)
		}
		gauge(d.summaryEnd, float64(h.patchSummary.End.Unix()))
	}
	for i, c := range []*checkState{&h.reboot, &h.updates, &h.kernel, &h.summary} {
		if c.ok {
			gauge(d.checks[i].last, float64(c.last.UnixNano())/1e9)
		}
		ch <- prometheus.MustNewConstMetric(d.checks[i].errs, prometheus.CounterValue, c.errors)
	}
}

func b2f(b bool) float64 {
	if b {
		return 1
	}
	return 0
}

var _ prometheus.Collector = (*HostState)(nil)
