package fleettest

import (
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"go.yaml.in/yaml/v3"
)

// Intervals of the test's Prometheus: far shorter than the minute the
// example scrape job uses, so that the test takes minutes, not hours.
const (
	scrapeInterval = 2 * time.Second
	evalInterval   = 1 * time.Second
)

// heldFailsafe is the failsafe of the host whose cycle is held open, and
// the age from which the test's copy of PatchdCycleOpenTooLong fires
// (the shipped rule: failsafe 3 h + 1 h, for 15 m; its timing is covered
// by patchd-alerts.test.yml).
const heldFailsafe = 20 * time.Second

// prometheus is the real Prometheus server (the Debian package's) that
// scrapes the fleet.
type prometheus struct {
	addr string
	cmd  *exec.Cmd
	done chan struct{}
	out  *lockedBuffer
}

type sample struct {
	Metric map[string]string `json:"metric"`
	Value  [2]any            `json:"value"`
	Values [][2]any          `json:"values"`
}

func (s sample) float() float64 {
	v, _ := s.Value[1].(string)
	f, _ := strconv.ParseFloat(v, 64)
	return f
}

type alert struct {
	Labels   map[string]string `json:"labels"`
	State    string            `json:"state"`
	ActiveAt time.Time         `json:"activeAt"`
}

// freeLoopbackPort asks the kernel for a free port on 127.0.0.1.
func freeLoopbackPort(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	return addr
}

// scrapeJob is the example scrape job's relabeling (ec2_sd_configs meta
// labels to instance, name, patch_group), applied to file_sd_configs
// targets that carry the meta labels EC2 service discovery would give.
func scrapeJob(t *testing.T, targetsFile string) map[string]any {
	t.Helper()
	b, err := os.ReadFile("../prometheus/prometheus-scrape.example.yml")
	if err != nil {
		t.Fatal(err)
	}
	var ex struct {
		ScrapeConfigs []map[string]any `yaml:"scrape_configs"`
	}
	if err := yaml.Unmarshal(b, &ex); err != nil {
		t.Fatalf("prometheus-scrape.example.yml: %v", err)
	}
	if len(ex.ScrapeConfigs) == 0 || ex.ScrapeConfigs[0]["relabel_configs"] == nil {
		t.Fatal("prometheus-scrape.example.yml: no relabel_configs in its first scrape job")
	}
	return map[string]any{
		"job_name":        ex.ScrapeConfigs[0]["job_name"],
		"scrape_interval": scrapeInterval.String(),
		"scrape_timeout":  scrapeInterval.String(),
		"file_sd_configs": []any{map[string]any{"files": []string{targetsFile}}},
		"relabel_configs": ex.ScrapeConfigs[0]["relabel_configs"],
	}
}

// testAlertRules is the shipped alert file with the stuck-cycle age cut
// from 4 h (for 15 m) to the held host's failsafe (for 2 s).
func testAlertRules(t *testing.T, dir string) string {
	t.Helper()
	b, err := os.ReadFile("../prometheus/patchd-alerts.yml")
	if err != nil {
		t.Fatal(err)
	}
	old := "(time() - patchd_cycle_started_timestamp_seconds) > 4 * 3600\n        for: 15m"
	short := strings.Replace(string(b), old,
		fmt.Sprintf("(time() - patchd_cycle_started_timestamp_seconds) > %d\n        for: 2s", int(heldFailsafe.Seconds())), 1)
	if short == string(b) {
		t.Fatal("the PatchdCycleOpenTooLong rule changed: update testAlertRules")
	}
	p := filepath.Join(dir, "patchd-alerts.test-copy.yml")
	if err := os.WriteFile(p, []byte(short), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

// regionLabel is the regional server's external label, which /federate
// adds to every series it serves.
const regionLabel = "local-1"

// startPrometheus runs the regional server: it scrapes the fleet.
func startPrometheus(t *testing.T, promBin, promtool, dir, targetsFile string) *prometheus {
	t.Helper()
	fleetRules, err := filepath.Abs("../prometheus/patchd-fleet-rules.yml")
	if err != nil {
		t.Fatal(err)
	}
	return runPrometheus(t, promBin, promtool, filepath.Join(dir, "prometheus"), map[string]any{
		"global": map[string]any{
			"scrape_interval":     scrapeInterval.String(),
			"evaluation_interval": evalInterval.String(),
			"external_labels":     map[string]string{"region": regionLabel},
		},
		// The fleet rules as shipped; the alerts with one test threshold.
		"rule_files":     []string{testAlertRules(t, dir), fleetRules},
		"scrape_configs": []any{scrapeJob(t, targetsFile)},
	})
}

// startGlobal runs a global server with the example federation job,
// pointed at the regional one.
func startGlobal(t *testing.T, promBin, promtool, dir string, regional *prometheus) *prometheus {
	t.Helper()
	b, err := os.ReadFile("../prometheus/prometheus-federation.example.yml")
	if err != nil {
		t.Fatal(err)
	}
	var ex struct {
		ScrapeConfigs []map[string]any `yaml:"scrape_configs"`
	}
	if err := yaml.Unmarshal(b, &ex); err != nil || len(ex.ScrapeConfigs) == 0 {
		t.Fatalf("prometheus-federation.example.yml: no scrape job (%v)", err)
	}
	job := ex.ScrapeConfigs[0]
	job["scrape_interval"], job["scrape_timeout"] = scrapeInterval.String(), scrapeInterval.String()
	job["static_configs"] = []any{map[string]any{"targets": []string{regional.addr}}}
	return runPrometheus(t, promBin, promtool, filepath.Join(dir, "global"), map[string]any{
		"global":         map[string]any{"scrape_interval": scrapeInterval.String()},
		"scrape_configs": []any{job},
	})
}

func runPrometheus(t *testing.T, promBin, promtool, dir string, cfg map[string]any) *prometheus {
	t.Helper()
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	b, err := yaml.Marshal(cfg)
	if err != nil {
		t.Fatal(err)
	}
	cfgFile := filepath.Join(dir, "prometheus.yml")
	if err := os.WriteFile(cfgFile, b, 0o644); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command(promtool, "check", "config", cfgFile).CombinedOutput(); err != nil {
		t.Fatalf("promtool check config %s: %v\n%s", cfgFile, err, out)
	}
	p := &prometheus{addr: freeLoopbackPort(t), done: make(chan struct{}), out: &lockedBuffer{}}
	p.cmd = exec.Command(promBin, "--config.file="+cfgFile, "--storage.tsdb.path="+filepath.Join(dir, "tsdb"),
		"--web.listen-address="+p.addr, "--log.level=warn")
	p.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	p.cmd.Stdout, p.cmd.Stderr = p.out, p.out
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { _ = p.cmd.Wait(); close(p.done) }()
	t.Cleanup(func() {
		_ = p.cmd.Process.Signal(syscall.SIGTERM)
		timer := time.NewTimer(30 * time.Second)
		defer timer.Stop()
		select {
		case <-p.done:
		case <-timer.C:
			_ = syscall.Kill(-p.cmd.Process.Pid, syscall.SIGKILL)
			<-p.done
		}
		if t.Failed() {
			t.Logf("prometheus output:\n%s", p.out.String())
		}
	})
	return p
}

var apiClient = &http.Client{Timeout: 10 * time.Second}

func (p *prometheus) get(path string, v any) error {
	resp, err := apiClient.Get("http://" + p.addr + path)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return err
	}
	var r struct {
		Status string          `json:"status"`
		Error  string          `json:"error"`
		Data   json.RawMessage `json:"data"`
	}
	if err := json.Unmarshal(body, &r); err != nil {
		return fmt.Errorf("GET %s: %s: %v", path, resp.Status, err)
	}
	if r.Status != "success" {
		return fmt.Errorf("GET %s: %s", path, r.Error)
	}
	return json.Unmarshal(r.Data, v)
}

// query runs an instant query; the result is a vector (or, for a range
// selector, a matrix in Values).
func (p *prometheus) query(q string) ([]sample, error) {
	var d struct {
		ResultType string          `json:"resultType"`
		Result     json.RawMessage `json:"result"`
	}
	if err := p.get("/api/v1/query?query="+url.QueryEscape(q), &d); err != nil {
		return nil, err
	}
	var out []sample
	if d.ResultType == "scalar" {
		var v [2]any
		if err := json.Unmarshal(d.Result, &v); err != nil {
			return nil, err
		}
		return []sample{{Value: v}}, nil
	}
	return out, json.Unmarshal(d.Result, &out)
}

func (p *prometheus) alerts() ([]alert, error) {
	var d struct {
		Alerts []alert `json:"alerts"`
	}
	return d.Alerts, p.get("/api/v1/alerts", &d)
}

// firing is the set of instances a firing alert names.
func (p *prometheus) firing(name string) (map[string]alert, error) {
	as, err := p.alerts()
	if err != nil {
		return nil, err
	}
	out := map[string]alert{}
	for _, a := range as {
		if a.Labels["alertname"] == name && a.State == "firing" {
			out[a.Labels["instance"]] = a
		}
	}
	return out, nil
}

// byLabel turns a vector into label value -> value.
func byLabel(s []sample, label string) map[string]float64 {
	out := map[string]float64{}
	for _, x := range s {
		out[x.Metric[label]] = x.float()
	}
	return out
}

func equalMaps(a, b map[string]float64) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if w, ok := b[k]; !ok || w != v {
			return false
		}
	}
	return true
}

func fmtMap(m map[string]float64) string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var b strings.Builder
	for _, k := range keys {
		fmt.Fprintf(&b, "%s=%g ", k, m[k])
	}
	return strings.TrimSpace(b.String())
}

// quantile of xs (sorted in place), nearest rank.
func quantile(xs []float64, q float64) float64 {
	if len(xs) == 0 {
		return 0
	}
	sort.Float64s(xs)
	i := int(q*float64(len(xs))+0.5) - 1
	if i < 0 {
		i = 0
	}
	if i >= len(xs) {
		i = len(xs) - 1
	}
	return xs[i]
}

// selfMetric reads one unlabelled value from Prometheus's own /metrics.
func (p *prometheus) selfMetric(name string) (float64, error) {
	resp, err := apiClient.Get("http://" + p.addr + "/metrics")
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return 0, err
	}
	for _, line := range strings.Split(string(body), "\n") {
		if v, ok := strings.CutPrefix(line, name+" "); ok {
			return strconv.ParseFloat(strings.TrimSpace(v), 64)
		}
	}
	return 0, fmt.Errorf("prometheus /metrics has no %s", name)
}

// selfMax is the largest value of a metric in Prometheus's own /metrics,
// over all its series.
func (p *prometheus) selfMax(name string) (float64, error) {
	resp, err := apiClient.Get("http://" + p.addr + "/metrics")
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return 0, err
	}
	found, m := false, 0.0
	for _, line := range strings.Split(string(body), "\n") {
		if !strings.HasPrefix(line, name+"{") && !strings.HasPrefix(line, name+" ") {
			continue
		}
		f := strings.Fields(line)
		v, err := strconv.ParseFloat(f[len(f)-1], 64)
		if err == nil {
			found, m = true, max(m, v)
		}
	}
	if !found {
		return 0, fmt.Errorf("prometheus /metrics has no %s", name)
	}
	return m, nil
}

// value is the single value a query returns.
func (p *prometheus) value(q string) (float64, bool) {
	s, err := p.query(q)
	if err != nil || len(s) != 1 {
		return 0, false
	}
	return s[0].float(), true
}
