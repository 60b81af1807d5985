package main

// The metrics area end to end: the real patchd on a fixture host (fake
// package-manager commands printing real samples, a simulated agent, a fake
// IMDS) through a patch cycle, with its /metrics compared to a committed
// golden exposition, linted by promtool, checked against the catalogue of
// docs/metrics.md (which is generated from it), the dashboard and the alert
// rules checked against that catalogue, timestamps checked across a restart,
// and a real Prometheus scraping it all.

import (
	"bufio"
	"crypto/tls"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	"go.yaml.in/yaml/v3"
	"golang.org/x/crypto/bcrypt"

	"github.com/patchd/patchd/agent/cycle"
	"github.com/patchd/patchd/agent/ssm"
	"github.com/patchd/patchd/agent/ssm/ssmsim"
)

var updateMetricsGolden = flag.Bool("update-metrics-golden", false,
	"rewrite testdata/metrics.golden.prom and the metric catalogue of docs/metrics.md from the live /metrics")

// requirePrometheus makes a missing promtool or prometheus a failure rather
// than a skip; `make test-prometheus` sets it, as CI installs both.
const requirePrometheusEnv = "PATCHD_REQUIRE_PROMETHEUS"

func needTool(t *testing.T, name string) string {
	t.Helper()
	p, err := exec.LookPath(name)
	if err != nil {
		if os.Getenv(requirePrometheusEnv) != "" {
			t.Fatalf("%s not found and %s is set: apt-get install prometheus", name, requirePrometheusEnv)
		}
		t.Skipf("%s not installed (apt-get install prometheus); set %s=1 to make this a failure", name, requirePrometheusEnv)
	}
	return p
}

// metricsHost is a cycle host whose patchd serves /metrics and whose
// package manager, kernel and AWS patch summary are fixtures.
type metricsHost struct {
	*cycleEnv
	addr, marker, patchDir string
	imds                   *httptest.Server
	extra                  []string
	// scheme and client reach /metrics (https with basic auth when a web
	// configuration is given).
	scheme, user, password string
	client                 *http.Client
}

// hostStateTestdata holds the real package-manager samples.
var hostStateTestdata, _ = filepath.Abs("../../agent/hoststate/testdata")

// markerTime is the fixed mtime of the reboot marker.
var markerTime = time.Unix(1_763_000_000, 0)

func newMetricsHost(t *testing.T) *metricsHost {
	t.Helper()
	e := newCycleEnv(t)
	h := &metricsHost{cycleEnv: e, addr: freePort(t), scheme: "http", client: &http.Client{Timeout: 10 * time.Second},
		marker: filepath.Join(e.tr.Root, "reboot-required"), patchDir: filepath.Join(e.tr.Root, "patch-configuration")}
	fakes := map[string]string{
		"apt-get": "#!/bin/sh\nexec /bin/cat " + hostStateTestdata + "/apt-get-s-dist-upgrade.debian12.txt\n",
		"uname":   "#!/bin/sh\necho 6.1.0-10-amd64\n",
		// The ledger's package snapshot and the kernel check share dpkg-query.
		"dpkg-query": "#!/bin/sh\ncase \"$*\" in\n*linux-image*) exec /bin/cat " + hostStateTestdata +
			"/dpkg-query-linux-image.debian12.txt;;\n*) exec /bin/cat " + e.pkgs + ";;\nesac\n",
	}
	for n, s := range fakes {
		must(t, os.WriteFile(filepath.Join(e.bin, n), []byte(s), 0o755))
	}
	must(t, os.WriteFile(h.marker, []byte("*** System restart required ***\n"), 0o644))
	must(t, os.Chtimes(h.marker, markerTime, markerTime))
	must(t, os.MkdirAll(h.patchDir, 0o755))
	summary, err := os.ReadFile(filepath.Join(hostStateTestdata, "patch-inventory-from-last-operation.ubuntu2004.json"))
	must(t, err)
	must(t, os.WriteFile(filepath.Join(h.patchDir, "patch-inventory-from-last-operation.json"), summary, 0o644))
	h.imds = httptest.NewServer(&keeperIMDS{profile: "arn:aws:iam::123456789012:instance-profile/web", role: "web-role"})
	t.Cleanup(h.imds.Close)
	h.extra = []string{
		"--web.listen-address=" + h.addr,
		"--imds.endpoint=" + h.imds.URL,
		"--agent.service=command",
		"--agent.restart-command=true",
		"--agent.restart-check-timeout=10s",
		"--hooks.post-patch-retry-backoff=50ms",
		"--host-state.reboot-required-file=" + h.marker,
		"--host-state.patch-configuration-dir=" + h.patchDir,
		// The report's outbox would hold the cycle's report or not
		// depending on when the scrape comes; its own tests cover it.
		"--ssm.report=off",
	}
	return h
}

// start runs patchd with metrics on h.addr and waits for its first
// host-state round.
func (h *metricsHost) start(extra ...string) *daemonProc {
	t := h.t
	t.Helper()
	args := append(append(append([]string{"run"}, h.tr.flags()...), h.extra...), extra...)
	cmd := exec.Command(patchdBin, args...)
	cmd.Env = append(os.Environ(), "PATH="+h.bin+":"+os.Getenv("PATH"))
	p := &daemonProc{cmd: cmd, stderr: &syncBuffer{}, done: make(chan error, 1)}
	cmd.Stdout, cmd.Stderr = p.stderr, p.stderr
	must(t, cmd.Start())
	go func() { p.done <- cmd.Wait() }()
	t.Cleanup(func() {
		if !p.exited() {
			_ = cmd.Process.Kill()
			<-p.done
			p.done <- nil
		}
		if t.Failed() {
			t.Logf("patchd output:\n%s", p.stderr.String())
		}
	})
	h.p = p
	eventually(t, 90*time.Second, "the first host-state round", func() bool {
		if p.exited() {
			t.Fatalf("patchd exited:\n%s", p.stderr.String())
		}
		body, err := h.scrape()
		return err == nil && strings.Contains(body, "patchd_aws_patch_last_check_timestamp_seconds ")
	})
	return p
}

func (h *metricsHost) scrape() (string, error) {
	req, err := http.NewRequest(http.MethodGet, h.scheme+"://"+h.addr+"/metrics", nil)
	if err != nil {
		return "", err
	}
	if h.user != "" {
		req.SetBasicAuth(h.user, h.password)
	}
	resp, err := h.client.Do(req)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	var b strings.Builder
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 0, 64*1024), 1024*1024)
	for sc.Scan() {
		b.WriteString(sc.Text() + "\n")
	}
	if resp.StatusCode != http.StatusOK {
		return "", fmt.Errorf("GET /metrics: %s", resp.Status)
	}
	return b.String(), sc.Err()
}

// runCycle plays one AWS-RunPatchBaseline Install without reboot that
// changes a package, and waits until patchd closed the cycle.
func (h *metricsHost) runCycle(n int) *ssmsim.Doc {
	t := h.t
	t.Helper()
	d, err := h.agent.Submit(ssmsim.RunPatchBaseline("Install", "NoReboot"))
	must(t, err)
	must(t, d.Start())
	must(t, d.RunStep(""))
	h.waitFor("pre-patch", func() bool { return h.phaseCount("pre-patch") == 2*n })
	// The open-time package snapshot runs beside pre-patch; change the
	// packages only once it is in cycle.json.
	h.waitFor("the open-time package snapshot", func() bool {
		st, err := cycle.StatusFromFile(h.tr.State)
		return err == nil && st.Current != nil && len(st.Current.Packages) > 0
	})
	h.setPackages("bash\t5.2-2\tamd64", "openssl\t3.0.1-1\tamd64", fmt.Sprintf("libfoo\t1.%d\tamd64", n))
	must(t, d.Finish(ssm.StatusSuccess))
	h.waitFor("the cycle to close", func() bool { return h.closed(n) })
	return d
}

// parseExposition reads a text exposition into families by name.
func parseExposition(t *testing.T, body string) map[string]*dto.MetricFamily {
	t.Helper()
	p := expfmt.NewTextParser(model.LegacyValidation)
	mfs, err := p.TextToMetricFamilies(strings.NewReader(body))
	if err != nil {
		t.Fatalf("parsing /metrics: %v", err)
	}
	return mfs
}

// Series whose values depend on when and how fast the test ran. Their lines
// stay in the golden file (the series must exist) with the value replaced.
var (
	volatilePrefixes = []string{"go_", "process_", "promhttp_"}
	// Timestamps not fixed by the fixtures.
	fixedTimestamps = map[string]bool{
		"patchd_reboot_required_since_timestamp_seconds":   true,
		"patchd_aws_patch_operation_end_timestamp_seconds": true,
	}
	volatileMetrics = map[string]bool{
		// Durations.
		"patchd_hook_duration_seconds_bucket": true,
		"patchd_hook_duration_seconds_sum":    true,
		// A state file may leave pending/ before the watcher reads it.
		"patchd_agent_commands_seen_total": true,
	}
	sampleLine   = regexp.MustCompile(`^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{[^}]*\})? (.*)$`)
	goVersionLbl = regexp.MustCompile(`goversion="[^"]*"`)
)

// normalize drops the Go runtime and process collectors (as node_exporter's
// end-to-end test does) and replaces the values that follow the clock.
func normalize(body string) string {
	var out []string
	for _, line := range strings.Split(strings.TrimRight(body, "\n"), "\n") {
		name := line
		if strings.HasPrefix(line, "# ") {
			f := strings.Fields(line)
			if len(f) >= 3 {
				name = f[2]
			}
		}
		skip := false
		for _, p := range volatilePrefixes {
			if strings.HasPrefix(name, p) {
				skip = true
			}
		}
		if skip {
			continue
		}
		if m := sampleLine.FindStringSubmatch(line); m != nil && !strings.HasPrefix(line, "#") {
			metric, labels, value := m[1], m[2], m[3]
			labels = goVersionLbl.ReplaceAllString(labels, `goversion="GO"`)
			switch {
			case volatileMetrics[metric]:
				value = "VALUE"
			case strings.HasSuffix(metric, "_timestamp_seconds") && !fixedTimestamps[metric] && value != "0":
				value = "TIMESTAMP"
			}
			line = metric + labels + " " + value
		}
		out = append(out, line)
	}
	return strings.Join(out, "\n") + "\n"
}

func TestMetricsEndToEnd(t *testing.T) {
	t.Parallel()
	h := newMetricsHost(t)
	h.start()
	h.runCycle(1)
	code, out, errOut := runPatchd(t, append([]string{"agent", "restart", "--detail=metrics e2e"}, h.tr.flags()...)...)
	if code != 0 {
		t.Fatalf("patchd agent restart: exit %d\n%s%s", code, out, errOut)
	}
	var body string
	eventually(t, 60*time.Second, "the cycle and the restart on /metrics", func() bool {
		b, err := h.scrape()
		body = b
		return err == nil && strings.Contains(b, `patchd_cycles_total{result="success",trigger="observed"} 1`) &&
			strings.Contains(b, `patchd_agent_restarts_total{reason="manual"} 1`)
	})

	t.Run("promtool check metrics", func(t *testing.T) {
		needTool(t, "promtool")
		promtoolCheck(t, body)
	})

	t.Run("golden", func(t *testing.T) {
		golden := filepath.Join("testdata", "metrics.golden.prom")
		got := normalize(body)
		if *updateMetricsGolden {
			must(t, os.MkdirAll("testdata", 0o755))
			must(t, os.WriteFile(golden, []byte(got), 0o644))
		}
		want, err := os.ReadFile(golden)
		must(t, err)
		if got != string(want) {
			t.Errorf("/metrics differs from %s (run go test ./cmd/patchd -run TestMetricsEndToEnd -update-metrics-golden if the change is meant):\n%s",
				golden, lineDiff(string(want), got))
		}
	})

	t.Run("daemon GOGC", func(t *testing.T) {
		if os.Getenv("GOGC") != "" {
			t.Skip("GOGC is set in the environment, and wins")
		}
		if want := fmt.Sprintf("\ngo_gc_gogc_percent %d\n", daemonGCPercent); !strings.Contains(body, want) {
			t.Errorf("/metrics has no %q: the daemon's GC percent is not set", strings.TrimSpace(want))
		}
	})

	mfs := parseExposition(t, body)
	t.Run("catalogue", func(t *testing.T) {
		got := catalogue(mfs)
		if *updateMetricsGolden {
			writeCatalogue(t, got)
		}
		want := readCatalogue(t)
		if d := lineDiff(strings.Join(want, "\n"), strings.Join(got, "\n")); d != "" {
			t.Errorf("docs/metrics.md's metric catalogue differs from /metrics (regenerate with -update-metrics-golden):\n%s", d)
		}
	})

	t.Run("restored after restart", func(t *testing.T) {
		// What the fleet view needs across a reboot (docs/metrics.md): the
		// last cycle's end and success, the last agent restart, the reboot
		// "since", the cycle counters, and the start of a cycle still open
		// (the stuck-cycle alert's clock).
		d, err := h.agent.Submit(ssmsim.RunPatchBaseline("Install", "NoReboot"))
		must(t, err)
		must(t, d.Start())
		must(t, d.RunStep(""))
		h.waitFor("pre-patch of the open cycle", func() bool { return h.phaseCount("pre-patch") == 4 })
		var before map[string]*dto.MetricFamily
		eventually(t, 30*time.Second, "the open cycle on /metrics", func() bool {
			before = parseExposition(t, mustScrape(t, h))
			return firstValue(before["patchd_cycle_active"]) == 1
		})
		h.stop()
		h.start()
		after := parseExposition(t, mustScrape(t, h))
		for _, name := range []string{
			"patchd_cycle_active",
			"patchd_cycle_started_timestamp_seconds",
			"patchd_last_cycle_end_timestamp_seconds",
			"patchd_last_successful_cycle_end_timestamp_seconds",
			"patchd_last_cycle_success",
			"patchd_agent_last_restart_timestamp_seconds",
			"patchd_reboot_required_since_timestamp_seconds",
		} {
			b, a := firstValue(before[name]), firstValue(after[name])
			switch {
			case before[name] == nil:
				t.Errorf("%s: not exported before the restart", name)
			case after[name] == nil:
				t.Errorf("%s: not exported after the restart", name)
			case b <= 0:
				t.Errorf("%s = %v before the restart: the scenario should have set it", name, b)
			case b != a:
				t.Errorf("%s = %v after the restart, %v before: not restored", name, a, b)
			}
		}
		// Other counters start again from 0, which rate() and increase()
		// take as a reset; the cycle count is the one the fleet view sums.
		for _, counter := range []string{"patchd_cycles_total"} {
			if b, a := sum(before[counter]), sum(after[counter]); b != a || a == 0 {
				t.Errorf("%s: %v in all before the restart, %v after", counter, b, a)
			}
		}
	})
}

func mustScrape(t *testing.T, h *metricsHost) string {
	t.Helper()
	body, err := h.scrape()
	must(t, err)
	return body
}

func firstValue(mf *dto.MetricFamily) float64 {
	if mf == nil || len(mf.Metric) == 0 {
		return -1
	}
	return metricValue(mf.Metric[0])
}

func sum(mf *dto.MetricFamily) float64 {
	if mf == nil {
		return 0
	}
	s := 0.0
	for _, m := range mf.Metric {
		s += metricValue(m)
	}
	return s
}

func metricValue(m *dto.Metric) float64 {
	switch {
	case m.Gauge != nil:
		return m.Gauge.GetValue()
	case m.Counter != nil:
		return m.Counter.GetValue()
	case m.Untyped != nil:
		return m.Untyped.GetValue()
	case m.Histogram != nil:
		return float64(m.Histogram.GetSampleCount())
	}
	return 0
}

// lineDiff lists the lines only in want (-) or only in got (+), in order.
func lineDiff(want, got string) string {
	w, g := strings.Split(want, "\n"), strings.Split(got, "\n")
	inW, inG := map[string]int{}, map[string]int{}
	for _, l := range w {
		inW[l]++
	}
	for _, l := range g {
		inG[l]++
	}
	var b strings.Builder
	for _, l := range w {
		if inG[l] == 0 {
			b.WriteString("- " + l + "\n")
		}
	}
	for _, l := range g {
		if inW[l] == 0 {
			b.WriteString("+ " + l + "\n")
		}
	}
	return b.String()
}

// The metric catalogue is docs/metrics.md's table between these markers.
const (
	catalogueBegin = "<!-- metric catalogue: generated by TestMetricsEndToEnd -update-metrics-golden -->"
	catalogueEnd   = "<!-- end of metric catalogue -->"
)

// catalogue renders one table row per patchd_ family: name, type, labels,
// meaning (its HELP).
func catalogue(mfs map[string]*dto.MetricFamily) []string {
	var names []string
	for n := range mfs {
		if strings.HasPrefix(n, "patchd_") {
			names = append(names, n)
		}
	}
	sort.Strings(names)
	rows := []string{"| metric | type | labels | meaning |", "|---|---|---|---|"}
	for _, n := range names {
		mf := mfs[n]
		labels := map[string]bool{}
		for _, m := range mf.Metric {
			for _, l := range m.Label {
				labels[l.GetName()] = true
			}
		}
		var ls []string
		for l := range labels {
			ls = append(ls, "`"+l+"`")
		}
		sort.Strings(ls)
		help := strings.ReplaceAll(mf.GetHelp(), "|", `\|`)
		rows = append(rows, fmt.Sprintf("| `%s` | %s | %s | %s |", n, strings.ToLower(mf.GetType().String()), strings.Join(ls, ", "), help))
	}
	return rows
}

const catalogueDoc = "../../docs/metrics.md"

func readCatalogue(t *testing.T) []string {
	t.Helper()
	b, err := os.ReadFile(catalogueDoc)
	must(t, err)
	s := string(b)
	i, j := strings.Index(s, catalogueBegin), strings.Index(s, catalogueEnd)
	if i < 0 || j < i {
		t.Fatalf("docs/metrics.md has no metric catalogue between %q and %q", catalogueBegin, catalogueEnd)
	}
	return strings.Split(strings.TrimSpace(s[i+len(catalogueBegin):j]), "\n")
}

func writeCatalogue(t *testing.T, rows []string) {
	t.Helper()
	b, err := os.ReadFile(catalogueDoc)
	must(t, err)
	s := string(b)
	i, j := strings.Index(s, catalogueBegin), strings.Index(s, catalogueEnd)
	if i < 0 || j < i {
		t.Fatalf("docs/metrics.md has no catalogue markers to write between")
	}
	s = s[:i+len(catalogueBegin)] + "\n" + strings.Join(rows, "\n") + "\n" + s[j:]
	must(t, os.WriteFile(catalogueDoc, []byte(s), 0o644))
}

// catalogueNames are the metric names docs/metrics.md documents.
func catalogueNames(t *testing.T) map[string]bool {
	t.Helper()
	names := map[string]bool{}
	for _, row := range readCatalogue(t) {
		if m := regexp.MustCompile("^\\| `(patchd_[a-z0-9_]+)`").FindStringSubmatch(row); m != nil {
			names[m[1]] = true
		}
	}
	if len(names) < 20 {
		t.Fatalf("only %d metrics in the catalogue of docs/metrics.md", len(names))
	}
	return names
}

// metricNamesIn finds patchd_ metric names in a query, mapping a
// histogram's _bucket/_sum/_count series to its family.
func metricNamesIn(expr string, known map[string]bool) []string {
	var out []string
	for _, n := range regexp.MustCompile(`patchd_[a-z0-9_]+`).FindAllString(expr, -1) {
		if !known[n] {
			for _, suf := range []string{"_bucket", "_sum", "_count"} {
				if base := strings.TrimSuffix(n, suf); base != n && known[base] {
					n = base
				}
			}
		}
		out = append(out, n)
	}
	return out
}

func TestDashboardAndRulesUseCataloguedMetrics(t *testing.T) {
	known := catalogueNames(t)
	b, err := os.ReadFile("../../packaging/grafana/patchd-dashboard.json")
	must(t, err)
	var dash struct {
		Panels []struct {
			Title   string
			Targets []struct{ Expr string }
		}
	}
	must(t, json.Unmarshal(b, &dash))
	queries := 0
	for _, p := range dash.Panels {
		for _, tg := range p.Targets {
			queries++
			names := metricNamesIn(withoutRecorded(tg.Expr), known)
			if len(names) == 0 && recordedName.MatchString(tg.Expr) {
				continue // reads a fleet recording rule, checked with the rules
			}
			if len(names) == 0 {
				t.Errorf("panel %q: query %q uses no patchd metric", p.Title, tg.Expr)
			}
			for _, n := range names {
				if !known[n] {
					t.Errorf("panel %q: %s is not in the metric catalogue of docs/metrics.md", p.Title, n)
				}
			}
		}
	}
	if queries < 6 {
		t.Errorf("only %d queries in the dashboard", queries)
	}
	for _, file := range []string{"patchd-alerts.yml", "patchd-fleet-rules.yml"} {
		rules, err := os.ReadFile("../../packaging/prometheus/" + file)
		must(t, err)
		var doc struct {
			Groups []struct {
				Rules []struct{ Record, Alert, Expr string }
			}
		}
		must(t, yaml.Unmarshal(rules, &doc))
		for _, g := range doc.Groups {
			for _, r := range g.Rules {
				for _, n := range metricNamesIn(withoutRecorded(r.Expr), known) {
					if !known[n] {
						t.Errorf("%s: rule %s%s: %s is not in the metric catalogue of docs/metrics.md", file, r.Record, r.Alert, n)
					}
				}
			}
		}
	}
}

// recordedName is a name the fleet recording rules record
// (level:metric:operations); its middle part is not a metric patchd exports.
var recordedName = regexp.MustCompile(`\b[a-z_]+:patchd_[a-z0-9_]+:[a-z0-9_]+\b`)

// withoutRecorded drops recording-rule names from a query, leaving the
// exported metrics it reads.
func withoutRecorded(expr string) string { return recordedName.ReplaceAllString(expr, "") }

// A real Prometheus scrapes patchd over TLS with basic auth (docs/metrics.md's
// setup) every second through a patch cycle; its HTTP API must show the
// cycle open and close, the cycle counter move, the stuck-cycle alert fire
// (a test copy of the rules with a short threshold), and every dashboard
// query must be valid PromQL.
func TestRealPrometheusScrapesACycle(t *testing.T) {
	t.Parallel()
	promBin := needTool(t, "prometheus")
	h := newMetricsHost(t)

	certFile, keyFile, pool := selfSignedCert(t, h.tr.Root)
	hash, err := bcrypt.GenerateFromPassword([]byte("fleet-secret"), bcrypt.MinCost)
	must(t, err)
	// The documented example, with this test's certificate and password.
	webCfg := filepath.Join(h.tr.Root, "web-config.yml")
	must(t, os.WriteFile(webCfg, []byte(exampleWebConfig(t, certFile, keyFile, string(hash))), 0o600))
	h.scheme, h.user, h.password = "https", "prometheus", "fleet-secret"
	h.client = &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}, Timeout: 10 * time.Second}
	h.extra = append(h.extra, "--web.config.file="+webCfg)
	h.start()

	// The shipped rules, with the stuck-cycle threshold cut from 4 h + 15 m
	// to seconds.
	rules, err := os.ReadFile("../../packaging/prometheus/patchd-alerts.yml")
	must(t, err)
	short := strings.Replace(string(rules), "(time() - patchd_cycle_started_timestamp_seconds) > 4 * 3600\n        for: 15m",
		"(time() - patchd_cycle_started_timestamp_seconds) > 2\n        for: 1s", 1)
	if short == string(rules) {
		t.Fatal("the PatchdCycleOpenTooLong rule changed: update this test's threshold replacement")
	}
	dir := t.TempDir()
	must(t, os.WriteFile(filepath.Join(dir, "rules.yml"), []byte(short), 0o644))
	must(t, os.WriteFile(filepath.Join(dir, "password"), []byte("fleet-secret"), 0o600))
	promAddr := freePort(t)
	promCfg := fmt.Sprintf(`global:
  scrape_interval: 1s
  evaluation_interval: 1s
rule_files: [%s]
scrape_configs:
  - job_name: patchd
    scheme: https
    tls_config:
      ca_file: %s
    basic_auth:
      username: prometheus
      password_file: %s
    static_configs:
      - targets: [%q]
`, filepath.Join(dir, "rules.yml"), certFile, filepath.Join(dir, "password"), h.addr)
	must(t, os.WriteFile(filepath.Join(dir, "prometheus.yml"), []byte(promCfg), 0o644))
	if promtool, err := exec.LookPath("promtool"); err == nil {
		if out, err := exec.Command(promtool, "check", "config", filepath.Join(dir, "prometheus.yml")).CombinedOutput(); err != nil {
			t.Fatalf("promtool check config: %v\n%s", err, out)
		}
	}
	prom := exec.Command(promBin, "--config.file="+filepath.Join(dir, "prometheus.yml"),
		"--storage.tsdb.path="+filepath.Join(dir, "data"), "--web.listen-address="+promAddr)
	promOut := &syncBuffer{}
	prom.Stdout, prom.Stderr = promOut, promOut
	must(t, prom.Start())
	promDone := make(chan struct{})
	go func() { _ = prom.Wait(); close(promDone) }()
	t.Cleanup(func() {
		_ = prom.Process.Signal(os.Interrupt)
		select {
		case <-promDone:
		case <-time.After(30 * time.Second):
			_ = prom.Process.Kill()
			<-promDone
		}
		if t.Failed() {
			t.Logf("prometheus output:\n%s", promOut.String())
		}
	})
	api := "http://" + promAddr + "/api/v1/"
	query := func(q string) (float64, bool) {
		resp, err := http.Get(api + "query?query=" + url.QueryEscape(q))
		if err != nil {
			return 0, false
		}
		defer resp.Body.Close()
		var r struct {
			Status string
			Data   struct {
				Result []struct{ Value [2]any }
			}
		}
		if json.NewDecoder(resp.Body).Decode(&r) != nil || r.Status != "success" || len(r.Data.Result) == 0 {
			return 0, false
		}
		s, _ := r.Data.Result[0].Value[1].(string)
		var v float64
		if _, err := fmt.Sscan(s, &v); err != nil {
			return 0, false
		}
		return v, true
	}
	waitValue := func(q string, want float64) {
		t.Helper()
		eventually(t, 90*time.Second, fmt.Sprintf("Prometheus to answer %s = %v", q, want), func() bool {
			v, ok := query(q)
			return ok && v == want
		})
	}
	firing := func(name string) bool {
		resp, err := http.Get(api + "alerts")
		if err != nil {
			return false
		}
		defer resp.Body.Close()
		var r struct {
			Data struct {
				Alerts []struct {
					Labels map[string]string
					State  string
				}
			}
		}
		if json.NewDecoder(resp.Body).Decode(&r) != nil {
			return false
		}
		for _, a := range r.Data.Alerts {
			if a.Labels["alertname"] == name && a.State == "firing" {
				return true
			}
		}
		return false
	}

	waitValue(`up{job="patchd"}`, 1)
	waitValue(`patchd_build_info{job="patchd"}`, 1)
	waitValue(`patchd_updates_pending{kind="security"}`, 77)
	waitValue(`patchd_reboot_required`, 1)
	waitValue(`sum(patchd_cycles_total)`, 0)
	waitValue(`patchd_cycle_active`, 0)

	d, err := h.agent.Submit(ssmsim.RunPatchBaseline("Install", "NoReboot"))
	must(t, err)
	must(t, d.Start())
	must(t, d.RunStep(""))
	waitValue(`patchd_cycle_active`, 1)
	eventually(t, 90*time.Second, "PatchdCycleOpenTooLong to fire", func() bool { return firing("PatchdCycleOpenTooLong") })
	if firing("PatchdPostPatchHookFailed") {
		t.Error("PatchdPostPatchHookFailed fires on a host whose post-patch never ran")
	}
	must(t, d.Finish(ssm.StatusSuccess))
	waitValue(`patchd_cycle_active`, 0)
	waitValue(`sum(patchd_cycles_total)`, 1)
	waitValue(`patchd_cycles_total{trigger="observed",result="success"}`, 1)
	waitValue(`max_over_time(patchd_cycle_active[5m])`, 1)
	eventually(t, 90*time.Second, "PatchdCycleOpenTooLong to resolve", func() bool { return !firing("PatchdCycleOpenTooLong") })

	// Every dashboard query parses and runs.
	b, err := os.ReadFile("../../packaging/grafana/patchd-dashboard.json")
	must(t, err)
	var dash struct {
		Panels []struct {
			Title   string
			Targets []struct{ Expr string }
		}
	}
	must(t, json.Unmarshal(b, &dash))
	repl := strings.NewReplacer("$job", ".*", "$instance", ".*", "$patch_group", ".*", "$__rate_interval", "1m", "$__range", "1h")
	for _, p := range dash.Panels {
		for _, tg := range p.Targets {
			resp, err := http.Get(api + "query?query=" + url.QueryEscape(repl.Replace(tg.Expr)))
			must(t, err)
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != http.StatusOK || !strings.Contains(string(body), `"status":"success"`) {
				t.Errorf("panel %q: query %q: %s", p.Title, tg.Expr, body)
			}
		}
	}
}

// exampleWebConfig is packaging/prometheus/web-config.example.yml with its
// placeholders replaced.
func exampleWebConfig(t *testing.T, certFile, keyFile, hash string) string {
	t.Helper()
	b, err := os.ReadFile("../../packaging/prometheus/web-config.example.yml")
	must(t, err)
	out := strings.NewReplacer("/etc/patchd/tls/patchd.crt", certFile, "/etc/patchd/tls/patchd.key", keyFile).Replace(string(b))
	out = regexp.MustCompile(`(?m)^  prometheus: .*$`).ReplaceAllLiteralString(out, "  prometheus: "+hash)
	if out == string(b) || !strings.Contains(out, hash) {
		t.Fatal("web-config.example.yml changed: update exampleWebConfig's replacements")
	}
	return out
}

// The shipped Prometheus files are valid: rules (and their unit tests), the
// example scrape configuration, the example web configuration.
func TestPrometheusPackagingFiles(t *testing.T) {
	t.Parallel()
	promtool := needTool(t, "promtool")
	run := func(dir string, args ...string) {
		t.Helper()
		cmd := exec.Command(promtool, args...)
		cmd.Dir = dir
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Errorf("promtool %s: %v\n%s", strings.Join(args, " "), err, out)
		}
	}
	pkg, err := filepath.Abs("../../packaging/prometheus")
	must(t, err)
	run(pkg, "check", "rules", "patchd-alerts.yml", "patchd-fleet-rules.yml")
	run(pkg, "test", "rules", "patchd-alerts.test.yml", "patchd-fleet-rules.test.yml")
	run(pkg, "check", "config", "prometheus-federation.example.yml")

	dir := t.TempDir()
	b, err := os.ReadFile(filepath.Join(pkg, "prometheus-scrape.example.yml"))
	must(t, err)
	scrape := strings.NewReplacer("/etc/prometheus/patchd-alerts.yml", filepath.Join(pkg, "patchd-alerts.yml"),
		"/etc/prometheus/patchd-fleet-rules.yml", filepath.Join(pkg, "patchd-fleet-rules.yml")).Replace(string(b))
	must(t, os.WriteFile(filepath.Join(dir, "prometheus.yml"), []byte(scrape), 0o644))
	run(dir, "check", "config", "prometheus.yml")

	certFile, keyFile, _ := selfSignedCert(t, dir)
	hash, err := bcrypt.GenerateFromPassword([]byte("x"), bcrypt.MinCost)
	must(t, err)
	must(t, os.WriteFile(filepath.Join(dir, "web.yml"), []byte(exampleWebConfig(t, certFile, keyFile, string(hash))), 0o600))
	run(dir, "check", "web-config", "web.yml")
}
