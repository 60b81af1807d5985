package main

// A busy patchd in-process: every part wired as `patchd run` wires it, the
// simulated agent driving a thousand patch runs through the real state files,
// for the cardinality bound and the scrape benchmark.

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/alecthomas/kingpin/v2"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	versioncollector "github.com/prometheus/client_golang/prometheus/collectors/version"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/promslog"
	"golang.org/x/sys/unix"

	"github.com/patchd/patchd/agent/config"
	"github.com/patchd/patchd/agent/control"
	"github.com/patchd/patchd/agent/ssm"
	"github.com/patchd/patchd/agent/ssm/ssmsim"
)

// busyDaemon is a daemon built by the same setup functions as runDaemon,
// running its actors in the test process.
type busyDaemon struct {
	d      *daemon
	agent  *ssmsim.Agent
	tr     testTree
	closed int
	// stop ends the actors (once); the registry still serves what they
	// left.
	stop func()
}

func newBusyDaemon(tb testing.TB) *busyDaemon {
	tb.Helper()
	root := tb.TempDir()
	sockDir, err := os.MkdirTemp("", "pd")
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { os.RemoveAll(sockDir) })
	tr := testTree{Root: root, Hooks: filepath.Join(root, "hooks.d"), State: filepath.Join(root, "state"),
		AgentData: filepath.Join(root, "ssm-data"), AgentLogs: filepath.Join(root, "ssm-logs"),
		Socket: filepath.Join(sockDir, "patchd.sock")}
	for _, p := range config.Phases {
		if err := os.MkdirAll(filepath.Join(tr.Hooks, p), 0o755); err != nil {
			tb.Fatal(err)
		}
	}
	// Fast fakes for every command patchd runs, first in PATH.
	bin := filepath.Join(root, "bin")
	if err := os.MkdirAll(bin, 0o755); err != nil {
		tb.Fatal(err)
	}
	for n, s := range map[string]string{
		"apt-get":    "exec /bin/cat " + hostStateTestdata + "/apt-get-s-dist-upgrade.debian12.txt",
		"uname":      "echo 6.1.0-18-amd64",
		"dpkg-query": "case \"$*\" in *linux-image*) exec /bin/cat " + hostStateTestdata + "/dpkg-query-linux-image.debian12.txt;; *) printf 'bash\\t5.2-1\\tamd64\\n';; esac",
		"systemctl":  "echo running",
		"busctl":     "exit 1",
	} {
		if err := os.WriteFile(filepath.Join(bin, n), []byte("#!/bin/sh\n"+s+"\n"), 0o755); err != nil {
			tb.Fatal(err)
		}
	}
	tb.Setenv("PATH", bin+":/usr/bin:/bin")
	imds := httptest.NewServer(&keeperIMDS{profile: "arn:aws:iam::123456789012:instance-profile/web", role: "web-role"})
	tb.Cleanup(imds.Close)

	cfg := config.Default()
	cfg.Paths = config.Paths{Hooks: tr.Hooks, State: tr.State, AgentData: tr.AgentData, AgentLogs: tr.AgentLogs}
	cfg.Control.Socket = tr.Socket
	cfg.Web.ListenAddress = ""
	cfg.IMDS.Endpoint = imds.URL
	cfg.Agent.Service = "command"
	cfg.Agent.RestartCommand = "true"
	cfg.HostState.RebootRequiredFile = filepath.Join(root, "reboot-required")
	cfg.HostState.PatchConfigurationDir = filepath.Join(root, "patch-configuration")
	if err := os.MkdirAll(cfg.Paths.State, 0o700); err != nil {
		tb.Fatal(err)
	}
	// Every host-state series present: the worst case for the budget.
	if err := os.WriteFile(cfg.HostState.RebootRequiredFile, nil, 0o644); err != nil {
		tb.Fatal(err)
	}
	summary, err := os.ReadFile(filepath.Join(hostStateTestdata, "patch-inventory-from-last-operation.ubuntu2004.json"))
	if err != nil {
		tb.Fatal(err)
	}
	if err := os.MkdirAll(cfg.HostState.PatchConfigurationDir, 0o755); err != nil {
		tb.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(cfg.HostState.PatchConfigurationDir, "patch-inventory-from-last-operation.json"), summary, 0o644); err != nil {
		tb.Fatal(err)
	}

	// What runDaemon does before the parts' setup functions.
	logger := slog.New(slog.DiscardHandler)
	d := &daemon{flags: config.AddFlags(kingpin.New("patchd", "")), logger: logger, level: promslog.NewLevel(), reg: prometheus.NewRegistry()}
	d.cfg.Store(&cfg)
	d.reg.MustRegister(versioncollector.NewCollector("patchd"), collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	d.reloadOK = prometheus.NewGauge(prometheus.GaugeOpts{Name: "patchd_config_last_reload_successful", Help: "x"})
	d.reloadTime = prometheus.NewGauge(prometheus.GaugeOpts{Name: "patchd_config_last_reload_success_timestamp_seconds", Help: "x"})
	d.reg.MustRegister(d.reloadOK, d.reloadTime)
	d.control = control.NewServer(cfg.Control.Socket, logger)
	d.addActor("control", d.control.Run)
	for _, setup := range []func() error{d.setupHooks, d.setupFleet, d.setupCycle, d.setupKeeper, d.setupHostState, d.setupCommands, d.setupAgentLog} {
		if err := setup(); err != nil {
			tb.Fatal(err)
		}
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- d.runActors(ctx, time.Now()) }()
	var once sync.Once
	stop := func() {
		once.Do(func() {
			cancel()
			if err := <-done; err != nil {
				tb.Errorf("daemon stopped with %v", err)
			}
		})
	}
	tb.Cleanup(stop)
	agent := ssmsim.New(tr.AgentData, simInstance, tr.AgentLogs)
	if err := agent.Init(); err != nil {
		tb.Fatal(err)
	}
	return &busyDaemon{d: d, agent: agent, tr: tr, stop: stop}
}

// value sums the samples of a family in the daemon's registry.
func (b *busyDaemon) value(tb testing.TB, name string) float64 {
	tb.Helper()
	mfs, err := b.d.reg.Gather()
	if err != nil {
		tb.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() == name {
			return sum(mf)
		}
	}
	return 0
}

// waitFor polls the registry on a fast ticker with a hard deadline.
func (b *busyDaemon) waitFor(tb testing.TB, what string, cond func() bool) {
	tb.Helper()
	deadline := time.NewTimer(60 * time.Second)
	defer deadline.Stop()
	tick := time.NewTicker(time.Millisecond)
	defer tick.Stop()
	for !cond() {
		select {
		case <-deadline.C:
			tb.Fatalf("timed out waiting for %s", what)
		case <-tick.C:
		}
	}
}

// cycle plays one patch run with a fresh command id and waits for patchd to
// close its cycle.
func (b *busyDaemon) cycle(tb testing.TB) {
	tb.Helper()
	d, err := b.agent.Submit(ssmsim.RunPatchBaseline("Install", "NoReboot"))
	if err != nil {
		tb.Fatal(err)
	}
	if err := d.Start(); err != nil {
		tb.Fatal(err)
	}
	// The engine's status is a cheap read; gathering the registry in a
	// tight loop would starve the daemon under the race detector.
	e := b.d.cycle.engine
	b.waitFor(tb, "the cycle to open", func() bool {
		c := e.Status().Current
		return c != nil && c.Document.DocumentID == d.ID()
	})
	if err := d.Finish(ssm.StatusSuccess); err != nil {
		tb.Fatal(err)
	}
	b.closed++
	b.waitFor(tb, fmt.Sprintf("cycle %d to close", b.closed), func() bool {
		st := e.Status()
		return st.Current == nil && st.Last != nil && st.Last.DocumentID == d.ID()
	})
}

// series counts the registry's series per family as Prometheus stores them:
// a histogram is its buckets plus _sum and _count.
func (b *busyDaemon) series(tb testing.TB) map[string]int {
	tb.Helper()
	mfs, err := b.d.reg.Gather()
	if err != nil {
		tb.Fatal(err)
	}
	out := map[string]int{}
	for _, mf := range mfs {
		for _, m := range mf.Metric {
			switch mf.GetType() {
			case dto.MetricType_HISTOGRAM:
				out[mf.GetName()+"_bucket"] += len(m.Histogram.Bucket) + 1 // +Inf
				out[mf.GetName()] += 2
			case dto.MetricType_SUMMARY:
				out[mf.GetName()] += len(m.Summary.Quantile) + 2
			default:
				out[mf.GetName()]++
			}
		}
	}
	return out
}

// Series budget per host (docs/metrics.md): every patchd_ series, histogram
// buckets included, whatever the history.
const (
	patchdSeriesBudget = 150
	allSeriesBudget    = 350 // with go_ and process_
)

func TestCardinalityAfterManyCycles(t *testing.T) {
	if testing.Short() {
		t.Skip("many patch cycles; not in -short")
	}
	// A patch run costs patchd about a dozen fsyncs and two package
	// queries, a third of a second here under the race detector: go test
	// runs 50 by default, `make test-prometheus` the full 1000.
	cycles := 50
	if n, err := strconv.Atoi(os.Getenv("PATCHD_CARDINALITY_CYCLES")); err == nil && n > 0 {
		cycles = n
	}
	b := newBusyDaemon(t)
	toggle := func(i int) {
		// Hooks come and go with unique names: a name must never become a
		// label.
		for _, phase := range []string{"pre-patch", "post-patch"} {
			p := filepath.Join(b.tr.Hooks, phase, fmt.Sprintf("50-hook-%03d", i))
			if i%200 == 0 {
				must(t, os.WriteFile(p, []byte("#!/bin/sh\nexit 0\n"), 0o755))
			}
			old := filepath.Join(b.tr.Hooks, phase, fmt.Sprintf("50-hook-%03d", i-100))
			os.Remove(old)
		}
	}
	var early map[string]int
	start := time.Now()
	for i := 1; i <= cycles; i++ {
		if i%100 == 0 {
			toggle(i)
		}
		b.cycle(t)
		if i == 10 {
			early = b.series(t)
		}
	}
	t.Logf("%d cycles in %s", cycles, time.Since(start).Round(time.Millisecond))
	// The host-state checks run 10 s after start; make sure they are in.
	b.waitFor(t, "the host-state checks", func() bool { return b.value(t, "patchd_aws_patch_last_check_timestamp_seconds") > 0 })
	late := b.series(t)

	var patchd, all int
	var lines []string
	for name, n := range late {
		all += n
		if strings.HasPrefix(name, "patchd_") {
			patchd += n
		}
		lines = append(lines, fmt.Sprintf("%4d %s", n, name))
		if !strings.HasPrefix(name, "go_") && !strings.HasPrefix(name, "process_") && early[name] != n &&
			!strings.HasPrefix(name, "patchd_reboot_") && !strings.HasPrefix(name, "patchd_updates_") &&
			!strings.HasPrefix(name, "patchd_kernel_") && !strings.HasPrefix(name, "patchd_aws_patch_") {
			t.Errorf("%s: %d series after 10 cycles, %d after %d: grows with history", name, early[name], n, cycles)
		}
	}
	sort.Strings(lines)
	t.Logf("series after %d cycles: %d patchd_, %d in all\n%s", cycles, patchd, all, strings.Join(lines, "\n"))
	if patchd > patchdSeriesBudget {
		t.Errorf("%d patchd_ series (histogram buckets included), budget %d", patchd, patchdSeriesBudget)
	}
	if all > allSeriesBudget {
		t.Errorf("%d series in all (go_ and process_ included), budget %d", all, allSeriesBudget)
	}
}

// BenchmarkScrape serves /metrics of a patchd that has run cycles, with every
// part's collectors registered, and reports the 50th and 99th percentile of
// the wall time and the 99th of the process CPU time per scrape. The
// actors are stopped first so that only the scrape runs: the collectors
// serve what the parts left, as between two events in a real patchd.
//
// The baseline, scraped in the same loop (alternating which goes first), is
// a registry with only the standard Go and process collectors: what any Go
// exporter serves. Its figures, the ratio and the load average are printed.
func BenchmarkScrape(b *testing.B) {
	bd := newBusyDaemon(b)
	for i := 0; i < 20; i++ {
		bd.cycle(b)
	}
	bd.waitFor(b, "the host-state checks", func() bool { return bd.value(b, "patchd_aws_patch_last_check_timestamp_seconds") > 0 })
	bd.stop()
	h := promhttp.HandlerFor(bd.d.reg, promhttp.HandlerOpts{ErrorHandling: promhttp.ContinueOnError, Registry: bd.d.reg})
	baseReg := prometheus.NewRegistry()
	baseReg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	base := promhttp.HandlerFor(baseReg, promhttp.HandlerOpts{ErrorHandling: promhttp.ContinueOnError, Registry: baseReg})
	req := httptest.NewRequest(http.MethodGet, "/metrics", nil)
	wall := make([]time.Duration, 0, b.N)
	cpu := make([]time.Duration, 0, b.N)
	var baseWall, baseCPU []time.Duration
	var series int
	scrape := func(h http.Handler, wall, cpu *[]time.Duration) string {
		rec := httptest.NewRecorder()
		c0 := processCPU(b)
		t0 := time.Now()
		h.ServeHTTP(rec, req)
		*wall = append(*wall, time.Since(t0))
		*cpu = append(*cpu, processCPU(b)-c0)
		if rec.Code != http.StatusOK {
			b.Fatalf("status %d", rec.Code)
		}
		return rec.Body.String()
	}
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if i%2 == 1 {
			scrape(base, &baseWall, &baseCPU)
		}
		body := scrape(h, &wall, &cpu)
		if i%2 == 0 {
			scrape(base, &baseWall, &baseCPU)
		}
		if i == 0 {
			series = strings.Count(body, "\n") - strings.Count(body, "\n#")
		}
	}
	b.StopTimer()
	pct := func(ds []time.Duration, p int) float64 {
		sort.Slice(ds, func(i, j int) bool { return ds[i] < ds[j] })
		return float64(ds[(len(ds)-1)*p/100].Microseconds()) / 1000
	}
	b.ReportMetric(pct(wall, 50), "p50-ms")
	b.ReportMetric(pct(wall, 99), "p99-ms")
	b.ReportMetric(pct(cpu, 99), "cpu-p99-ms")
	b.ReportMetric(float64(series), "series")
	if b.N >= 100 {
		b.Logf("patchd p50 %.2f ms, p99 %.2f ms, cpu p99 %.2f ms; baseline (go_ and process_ only) p50 %.2f ms, p99 %.2f ms, cpu p99 %.2f ms; ratio p50 %.2f, p99 %.2f; load average %s",
			pct(wall, 50), pct(wall, 99), pct(cpu, 99), pct(baseWall, 50), pct(baseWall, 99), pct(baseCPU, 99),
			pct(wall, 50)/pct(baseWall, 50), pct(wall, 99)/pct(baseWall, 99), loadavg())
	}
}

// processCPU is the process's user+system time so far.
func processCPU(tb testing.TB) time.Duration {
	var ru unix.Rusage
	if err := unix.Getrusage(unix.RUSAGE_SELF, &ru); err != nil {
		tb.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
