// Package fleettest runs a fleet of 100 simulated EC2 hosts, each with the
// real patchd release binary and the simulated amazon-ssm-agent, under one
// real Prometheus that loads the shipped alert and fleet rules, and drives
// a patch wave through them the way a Maintenance Window does. It answers
// whether one host's failure among a hundred is seen as that host, and
// what patchd costs a fleet (docs/fleet-prometheus.md, BENCHMARKS.md).
//
// `make test-fleet` runs it (PATCHD_FLEET=1, PATCHD_FLEET_BIN=
// build/patchd-daemon, the full binary the unit starts); plain
// `go test ./...` skips it.
package fleettest

import (
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/patchd/patchd/agent/cycle"
	"github.com/patchd/patchd/agent/ssm"
	"github.com/patchd/patchd/agent/ssm/ssmsim"
)

const (
	fleetEnv  = "PATCHD_FLEET"        // set: run the fleet test
	binEnv    = "PATCHD_FLEET_BIN"    // the release daemon (make build); built here when unset
	reportEnv = "PATCHD_FLEET_REPORT" // also write the measured figures to this file
)

// The fleet and its wave.
const (
	hostCount      = 100
	maxConcurrency = 10      // the maintenance window task's MaxConcurrency
	maxErrors      = 1       // and MaxErrors
	failingPatch   = 33      // its AWS-RunPatchBaseline fails
	failingHook    = 37      // its post-patch hook fails: the second error stops the wave
	heldHost       = 99      // its cycle is held open past a short failsafe
	defaultPort    = "10795" // patchd's; taken when a patchd runs on this machine
)

// waveTargets are the hosts the window targets (patch groups web, api and
// db); batch (91-100) has its own window, not run here.
const waveTargets = 90

// rebootHosts install a kernel and reboot in the wave; pendingReboot hosts
// have a reboot pending that the wave does not take (8 patches with
// NoReboot, the others are not reached).
var (
	rebootHosts   = []int{5, 12, 20, 28}
	pendingReboot = []int{8, 55, 63, 77}
)

var patchdBin string

func patchGroup(n int) string {
	switch {
	case n <= 40:
		return "web"
	case n <= 70:
		return "api"
	case n <= 90:
		return "db"
	}
	return "batch"
}

// instanceID is host n's instance id; its decimal digits (valid hex) end in n.
func instanceID(n int) string { return fmt.Sprintf("i-0f1ee7%011d", n) }

// fleetIMDS answers IMDSv2 for every host: one role for the fleet.
func fleetIMDS(w http.ResponseWriter, r *http.Request) {
	if r.Method == http.MethodPut && r.URL.Path == "/latest/api/token" {
		w.Header().Set("X-Aws-Ec2-Metadata-Token-Ttl-Seconds", r.Header.Get("X-Aws-Ec2-Metadata-Token-Ttl-Seconds"))
		fmt.Fprint(w, "fleet-token")
		return
	}
	if r.Header.Get("X-Aws-Ec2-Metadata-Token") != "fleet-token" {
		http.Error(w, "unauthorized", http.StatusUnauthorized)
		return
	}
	switch r.URL.Path {
	case "/latest/meta-data/iam/info":
		fmt.Fprintf(w, `{"Code":"Success","LastUpdated":%q,"InstanceProfileArn":"arn:aws:iam::123456789012:instance-profile/fleet","InstanceProfileId":"AIPAFLEET"}`,
			time.Now().UTC().Format(time.RFC3339))
	case "/latest/meta-data/iam/security-credentials/":
		fmt.Fprintln(w, "fleet-role")
	case "/latest/meta-data/iam/security-credentials/fleet-role":
		fmt.Fprint(w, `{"Code":"Success","Type":"AWS-HMAC","AccessKeyId":"AKIA","SecretAccessKey":"x","Token":"y"}`)
	default:
		http.NotFound(w, r)
	}
}

func needTool(t *testing.T, name string) string {
	t.Helper()
	p, err := exec.LookPath(name)
	if err != nil {
		t.Fatalf("%s not found: apt-get install prometheus", name)
	}
	return p
}

// releaseBinary is the binary `make build` made, or one built here with
// the same flags.
func releaseBinary(t *testing.T) string {
	t.Helper()
	if p := os.Getenv(binEnv); p != "" {
		if _, err := os.Stat(p); err != nil {
			t.Fatalf("%s=%s: %v (run make build)", binEnv, p, err)
		}
		return p
	}
	out := filepath.Join(t.TempDir(), "patchd")
	cmd := exec.Command("go", "build", "-trimpath", "-ldflags", "-s -w", "-o", out, "../../cmd/patchd")
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build patchd: %v\n%s", err, b)
	}
	return out
}

type fleet struct {
	t     *testing.T
	root  string
	port  string
	hosts []*host // hosts[n-1] is host n
}

func (f *fleet) host(n int) *host { return f.hosts[n-1] }

func write(t *testing.T, path, content string, mode os.FileMode) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte(content), mode); err != nil {
		t.Fatal(err)
	}
}

// newFleet lays out every host and the shared fakes (package manager
// answers, a systemctl that says the system is running).
func newFleet(t *testing.T, port string) *fleet {
	t.Helper()
	f := &fleet{t: t, root: t.TempDir(), port: port}
	// Unix socket paths are limited to ~108 bytes; t.TempDir() can be long.
	sockDir, err := os.MkdirTemp("", "pf")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(sockDir) })

	hostState, err := filepath.Abs("../../agent/hoststate/testdata")
	if err != nil {
		t.Fatal(err)
	}
	bin := filepath.Join(f.root, "bin")
	pkgs := filepath.Join(f.root, "packages")
	write(t, pkgs, "bash\t5.2-1\tamd64\nopenssl\t3.0.1-1\tamd64\n", 0o644)
	for name, script := range map[string]string{
		"apt-get": "#!/bin/sh\nexec /bin/cat " + hostState + "/apt-get-s-dist-upgrade.debian12.txt\n",
		"uname":   "#!/bin/sh\necho 6.1.0-10-amd64\n",
		"dpkg-query": "#!/bin/sh\ncase \"$*\" in\n*linux-image*) exec /bin/cat " + hostState +
			"/dpkg-query-linux-image.debian12.txt;;\n*) exec /bin/cat " + pkgs + ";;\nesac\n",
		"systemctl": "#!/bin/sh\necho running\n",
		"busctl":    "#!/bin/sh\nexit 1\n",
	} {
		write(t, filepath.Join(bin, name), script, 0o755)
	}
	patchCfg := filepath.Join(f.root, "patch-configuration")
	summary, err := os.ReadFile(filepath.Join(hostState, "patch-inventory-from-last-operation.ubuntu2004.json"))
	if err != nil {
		t.Fatal(err)
	}
	write(t, filepath.Join(patchCfg, "patch-inventory-from-last-operation.json"), string(summary), 0o644)

	imds := httptest.NewServer(http.HandlerFunc(fleetIMDS))
	t.Cleanup(imds.Close)
	env := append(os.Environ(), "PATH="+bin+":"+os.Getenv("PATH"))

	for n := 1; n <= hostCount; n++ {
		dir := filepath.Join(f.root, fmt.Sprintf("host%03d", n))
		h := &host{n: n, id: instanceID(n), group: patchGroup(n), addr: fmt.Sprintf("127.0.1.%d:%s", n, port),
			dir: dir, hooks: filepath.Join(dir, "hooks.d"), state: filepath.Join(dir, "state"),
			agentData: filepath.Join(dir, "ssm-data"), agentLogs: filepath.Join(dir, "ssm-logs"),
			socket: filepath.Join(sockDir, fmt.Sprintf("h%d.sock", n)), marker: filepath.Join(dir, "run", "reboot-required"),
			events: filepath.Join(dir, "events"), fifo: filepath.Join(dir, "release"), env: env}
		h.name = fmt.Sprintf("%s-%03d", h.group, n)
		for _, d := range []string{"pre-patch", "pre-reboot", "post-patch"} {
			if err := os.MkdirAll(filepath.Join(h.hooks, d), 0o755); err != nil {
				t.Fatal(err)
			}
		}
		for _, d := range []string{h.state, filepath.Join(dir, "run")} {
			if err := os.MkdirAll(d, 0o755); err != nil {
				t.Fatal(err)
			}
		}
		silenced := filepath.Join(dir, "silenced")
		// Pre-patch silences the host's monitoring (an Alertmanager silence
		// in production); post-patch expires it.
		write(t, filepath.Join(h.hooks, "pre-patch", "10-silence"),
			"#!/bin/sh\necho \"$PATCHD_CYCLE_ID\" > "+silenced+"\necho \"pre-patch $PATCHD_CYCLE_ID\" >> "+h.events+"\n", 0o755)
		write(t, filepath.Join(h.hooks, "pre-reboot", "10-flush"),
			"#!/bin/sh\necho \"pre-reboot $PATCHD_CYCLE_ID\" >> "+h.events+"\n", 0o755)
		post := "#!/bin/sh\nrm -f " + silenced + "\necho \"post-patch $PATCHD_RESULT $PATCHD_ATTEMPT\" >> " + h.events + "\n"
		switch n {
		case failingHook:
			post = "#!/bin/sh\ndate +%s.%N >> " + filepath.Join(dir, "post-patch-failed-at") +
				"\necho \"post-patch $PATCHD_RESULT $PATCHD_ATTEMPT failed\" >> " + h.events +
				"\necho 'alertmanager unreachable: silence not expired' >&2\nexit 1\n"
		case heldHost:
			// Blocks until the test writes to the FIFO: the host stays in
			// its cycle (monitoring silenced) past the failsafe.
			if err := syscall.Mkfifo(h.fifo, 0o600); err != nil {
				t.Fatal(err)
			}
			post = "#!/bin/sh\nread line < " + h.fifo + "\n" + strings.TrimPrefix(post, "#!/bin/sh\n")
		}
		write(t, filepath.Join(h.hooks, "post-patch", "90-expire-silence"), post, 0o755)
		if slices.Contains(rebootHosts, n) || slices.Contains(pendingReboot, n) {
			write(t, h.marker, "*** System restart required ***\n", 0o644)
		}
		cfgFile := filepath.Join(dir, "patchd.yaml")
		write(t, cfgFile, "# Fleet test host: every setting is a flag.\n", 0o644)
		h.agent = ssmsim.New(h.agentData, h.id, h.agentLogs)
		if err := h.agent.Init(); err != nil {
			t.Fatal(err)
		}
		h.args = []string{"run",
			"--config.file=" + cfgFile,
			"--path.hooks=" + h.hooks,
			"--path.state=" + h.state,
			"--path.agent-data=" + h.agentData,
			"--path.agent-logs=" + h.agentLogs,
			"--control.socket=" + h.socket,
			"--web.listen-address=" + h.addr,
			"--imds.endpoint=" + imds.URL,
			"--agent.service=command",
			"--agent.restart-command=true",
			"--hooks.post-patch-retry-backoff=100ms", // 3 retries in 0.7 s, not 3.5 min
			"--host-state.reboot-required-file=" + h.marker,
			"--host-state.patch-configuration-dir=" + patchCfg,
		}
		if n == heldHost {
			h.args = append(h.args, "--cycle.failsafe-age="+heldFailsafe.String())
		}
		f.hosts = append(f.hosts, h)
	}
	t.Cleanup(f.shutdown)
	t.Cleanup(func() {
		if !t.Failed() {
			return
		}
		shown := 0
		for _, h := range f.hosts {
			if h.pid() != 0 && h.exited() && shown < 3 {
				shown++
				out := h.output()
				if len(out) > 4000 {
					out = out[len(out)-4000:]
				}
				t.Logf("host %d: patchd exited:\n%s", h.n, out)
			}
		}
	})
	return f
}

// shutdown releases the held hook and stops every patchd (SIGTERM, which
// also ends running hooks' groups; SIGKILL of the group after 20 s).
func (f *fleet) shutdown() {
	if fd, err := syscall.Open(f.host(heldHost).fifo, syscall.O_WRONLY|syscall.O_NONBLOCK, 0); err == nil {
		_, _ = syscall.Write(fd, []byte("released\n"))
		syscall.Close(fd)
	}
	var wg sync.WaitGroup
	for _, h := range f.hosts {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := h.stop(20 * time.Second); err != nil {
				f.t.Log(err)
			}
		}()
	}
	wg.Wait()
}

// fleetPort is a port free on every host's address: patchd's default
// 10795 when it is (a patchd listening on :10795 holds it on every
// loopback address), else one the kernel picks.
func fleetPort(t *testing.T) string {
	t.Helper()
	try := func(port string) bool {
		var ls []net.Listener
		defer func() {
			for _, l := range ls {
				l.Close()
			}
		}()
		for n := 1; n <= hostCount; n++ {
			l, err := net.Listen("tcp", fmt.Sprintf("127.0.1.%d:%s", n, port))
			if err != nil {
				return false
			}
			ls = append(ls, l)
		}
		return true
	}
	if try(defaultPort) {
		return defaultPort
	}
	for range 20 {
		l, err := net.Listen("tcp", "127.0.1.1:0")
		if err != nil {
			t.Fatalf("listen on 127.0.1.1: %v", err)
		}
		_, port, _ := net.SplitHostPort(l.Addr().String())
		l.Close()
		if try(port) {
			return port
		}
	}
	t.Fatalf("no port free on all of 127.0.1.1-%d", hostCount)
	return ""
}

// inotifyNeeded is the per-user inotify instance limit the fleet needs:
// each patchd holds a few (hooks, agent state folders, agent logs) and one
// user runs all 100 here, where each real host has its own 128.
const inotifyNeeded = 1024

func checkInotifyLimit(t *testing.T) {
	t.Helper()
	b, err := os.ReadFile("/proc/sys/fs/inotify/max_user_instances")
	if err != nil {
		t.Fatal(err)
	}
	var limit int
	fmt.Sscan(strings.TrimSpace(string(b)), &limit)
	if limit < inotifyNeeded {
		t.Fatalf("fs.inotify.max_user_instances is %d; %d patchd processes of one user need %d: sysctl -w fs.inotify.max_user_instances=%d (make test-fleet does it as root)",
			limit, hostCount, inotifyNeeded, inotifyNeeded)
	}
}

// eventually polls cond until it holds or within passes.
func eventually(t *testing.T, within time.Duration, what string, cond func() (bool, string)) {
	t.Helper()
	deadline := time.NewTimer(within)
	defer deadline.Stop()
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	for {
		ok, last := cond()
		if ok {
			return
		}
		select {
		case <-deadline.C:
			t.Fatalf("timed out after %s waiting for %s; last: %s", within, what, last)
		case <-tick.C:
		}
	}
}

// wave runs the patch on targets as a Maintenance Window task with rate
// controls does: at most maxConcurrency invocations at a time, and no new
// target once more than maxErrors invocations failed (invocations already
// running finish). It returns the outcomes in the order they started.
func wave(targets []*host, run func(*host) outcome) []outcome {
	results := make(chan outcome)
	var started []int
	done := map[int]outcome{}
	running, errs, next := 0, 0, 0
	for {
		for running < maxConcurrency && next < len(targets) && errs <= maxErrors {
			h := targets[next]
			started = append(started, h.n)
			next++
			running++
			go func() { results <- run(h) }()
		}
		if running == 0 {
			break
		}
		o := <-results
		running--
		done[o.host] = o
		if !o.ok {
			errs++
		}
	}
	out := make([]outcome, 0, len(started))
	for _, n := range started {
		out = append(out, done[n])
	}
	return out
}

func TestFleet(t *testing.T) {
	if os.Getenv(fleetEnv) == "" {
		t.Skipf("the fleet test runs with %s=1 (make test-fleet)", fleetEnv)
	}
	promBin, promtool := needTool(t, "prometheus"), needTool(t, "promtool")
	patchdBin = releaseBinary(t)
	port := fleetPort(t)
	checkInotifyLimit(t)
	load0, _ := os.ReadFile("/proc/loadavg")
	began := time.Now()

	var f *fleet
	t.Cleanup(func() {
		// Registered first, so it runs last: after the hosts and
		// Prometheus were stopped.
		if f == nil {
			return
		}
		if left := leftovers(f.root); len(left) > 0 {
			t.Errorf("processes left running:\n%s", strings.Join(left, "\n"))
		}
	})
	f = newFleet(t, port)
	// The targets as EC2 service discovery would give them: the address,
	// the instance id, the Name and Patch Group tags.
	var targets []map[string]any
	for _, h := range f.hosts {
		targets = append(targets, map[string]any{"targets": []string{h.addr}, "labels": map[string]string{
			"__meta_ec2_instance_id": h.id, "__meta_ec2_tag_Name": h.name, "__meta_ec2_tag_Patch_Group": h.group,
			"__meta_ec2_private_ip": strings.Split(h.addr, ":")[0]}})
	}
	tb, _ := json.Marshal(targets)
	targetsFile := filepath.Join(f.root, "targets.json")
	write(t, targetsFile, string(tb), 0o644)

	// Start the fleet, ten at a time, as hosts boot.
	var wg sync.WaitGroup
	sem := make(chan struct{}, 10)
	errs := make(chan error, hostCount)
	for _, h := range f.hosts {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			errs <- h.start()
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	prom := startPrometheus(t, promBin, promtool, f.root, targetsFile)
	t.Logf("fleet of %d started on 127.0.1.1-%d:%s in %s; Prometheus on %s", hostCount, hostCount, port, time.Since(began).Round(time.Millisecond), prom.addr)

	value := prom.value
	waitValue := func(q string, want float64) {
		t.Helper()
		eventually(t, 90*time.Second, fmt.Sprintf("%s = %g", q, want), func() (bool, string) {
			v, ok := value(q)
			return ok && v == want, fmt.Sprint(v, ok)
		})
	}
	// Every host up and through its first host-state round.
	waitValue(`count(up{job="patchd"} == 1)`, hostCount)
	waitValue(`count(patchd_reboot_required)`, hostCount)
	waitValue(`count(count by (instance, name, patch_group) (patchd_build_info))`, hostCount)
	ready := time.Now()
	t.Logf("all %d hosts scraped and through their first host-state round after %s", hostCount, ready.Sub(began).Round(time.Millisecond))

	// A host of the batch group patches outside the wave; its patch run
	// hangs (the document never ends), the failsafe closes it after 20 s,
	// and its post-patch hook blocks: the cycle stays open.
	held := f.host(heldHost)
	hd, err := held.agent.Submit(ssmsim.RunPatchBaseline("Install", "NoReboot"))
	if err != nil {
		t.Fatal(err)
	}
	if err := hd.Start(); err != nil {
		t.Fatal(err)
	}
	if err := hd.RunStep(""); err != nil {
		t.Fatal(err)
	}
	if err := held.waitFor("the held host's pre-patch", stepTimeout, held.waiting); err != nil {
		t.Fatal(err)
	}

	// The wave.
	waveStart := time.Now()
	cpuBefore := fleetCPU(f)
	outcomes := wave(f.hosts[:waveTargets], func(h *host) outcome {
		status := ssm.StatusSuccess
		if h.n == failingPatch {
			status = ssm.StatusFailed
		}
		return h.patch(status, slices.Contains(rebootHosts, h.n))
	})
	waveTook := time.Since(waveStart)
	var started []int
	for _, o := range outcomes {
		if o.err != nil {
			t.Fatal(o.err)
		}
		started = append(started, o.host)
	}
	t.Logf("wave: %d of %d targets started in %s, %d at a time", len(started), waveTargets, waveTook.Round(time.Millisecond), maxConcurrency)

	// What the test did, from its own record.
	patchedOK := map[int]bool{} // cycle result success
	lastFailed := map[int]bool{}
	for i, o := range outcomes {
		if o.host != i+1 {
			t.Fatalf("the wave started host %d in place %d: targets must start in order", o.host, i+1)
		}
		want := "success"
		if o.host == failingPatch {
			want = "failed"
		}
		if o.result != want || o.hookFail != (o.host == failingHook) || o.rebooted != slices.Contains(rebootHosts, o.host) {
			t.Errorf("host %d: result %s, post-patch hook failed %v, rebooted %v", o.host, o.result, o.hookFail, o.rebooted)
		}
		if o.result == "success" {
			patchedOK[o.host] = true
		}
		if !o.ok {
			lastFailed[o.host] = true
		}
	}
	// The window stops at the second error (MaxErrors 1); what was already
	// running finishes. Hosts after the last one started were never
	// patched.
	last := started[len(started)-1]
	if last < failingHook || last >= waveTargets {
		t.Errorf("the wave started hosts 1-%d of %d; want it to stop after host %d's error", last, waveTargets, failingHook)
	}
	for n := last + 1; n <= waveTargets; n++ {
		if len(f.host(n).ledger()) != 0 {
			t.Errorf("host %d was patched after the wave stopped", n)
		}
	}

	// 1. The post-patch failure alert: host 37, no other, within scrape
	// interval + evaluation interval (+ for: 0).
	h37 := f.host(failingHook)
	eventually(t, 60*time.Second, "PatchdPostPatchHookFailed for host 37", func() (bool, string) {
		a, err := prom.firing("PatchdPostPatchHookFailed")
		_, ok := a[h37.id]
		return err == nil && ok, fmt.Sprint(a, err)
	})
	firing, err := prom.firing("PatchdPostPatchHookFailed")
	if err != nil {
		t.Fatal(err)
	}
	if len(firing) != 1 {
		t.Errorf("PatchdPostPatchHookFailed fires for %d hosts, want host 37 alone: %v", len(firing), firing)
	}
	a37 := firing[h37.id]
	if a37.Labels["name"] != h37.name || a37.Labels["patch_group"] != h37.group {
		t.Errorf("the alert does not name the host: %v", a37.Labels)
	}
	// patchd reports the phase once its retries are over: the delay runs
	// from the last attempt's failure.
	attempts := readHookFailures(t, h37)
	if len(attempts) != 4 {
		t.Errorf("host 37's post-patch hook ran %d times; want 1 + 3 retries", len(attempts))
	}
	delay := a37.ActiveAt.Sub(attempts[len(attempts)-1])
	// The bound: from when patchd recorded the failed phase, one scrape
	// interval (as Prometheus really spaced this host's scrapes, which a
	// loaded machine stretches), one evaluation interval, for: 0, plus
	// the time that scrape and the rule groups took.
	recorded, ok := value(fmt.Sprintf(`patchd_hook_last_run_timestamp_seconds{instance=%q, phase="post-patch"}`, h37.id))
	if !ok {
		t.Fatal("no patchd_hook_last_run_timestamp_seconds for host 37")
	}
	sinceRecorded := a37.ActiveAt.Sub(time.Unix(0, int64(recorded*1e9)))
	maxScrape, _ := value(fmt.Sprintf(`max_over_time(scrape_duration_seconds{instance=%q}[5m])`, h37.id))
	maxEval, err := prom.selfMax("prometheus_rule_group_last_duration_seconds")
	if err != nil {
		t.Fatal(err)
	}
	gap := maxScrapeGap(t, prom, h37.id)
	bound := gap + evalInterval + durationOf(maxScrape) + durationOf(maxEval)
	t.Logf("hook failure to alert active: %s after the hook's last attempt, %s after patchd recorded it, %s after the first attempt (bound: scrape interval %s, as spaced %s, + evaluation %s + for 0 + that host's slowest scrape %s + the slowest rule group %s)",
		delay.Round(time.Millisecond), sinceRecorded.Round(time.Millisecond), a37.ActiveAt.Sub(attempts[0]).Round(time.Millisecond),
		scrapeInterval, gap.Round(time.Millisecond), evalInterval, durationOf(maxScrape).Round(time.Millisecond), durationOf(maxEval).Round(time.Millisecond))
	// Earlier than the record by at most a scrape's own duration: the
	// scrape stamped before patchd recorded may still have read it.
	if sinceRecorded < -durationOf(maxScrape) || sinceRecorded > bound {
		t.Errorf("alert active %s after patchd recorded the failed post-patch run; want within %s", sinceRecorded, bound)
	}

	// 2. The fleet recording rules, per patch group and per host, against
	// what the test did.
	rebootNeeded := map[int]bool{}
	for _, n := range pendingReboot {
		rebootNeeded[n] = true
	}
	open := map[int]bool{heldHost: true}
	perGroup := func(set map[int]bool) map[string]float64 {
		out := map[string]float64{}
		for _, h := range f.hosts {
			out[h.group] += 0
			if set[h.n] {
				out[h.group]++
			}
		}
		return out
	}
	all := map[int]bool{}
	for n := 1; n <= hostCount; n++ {
		all[n] = true
	}
	checks := []struct {
		rule string
		want map[string]float64
	}{
		{"patch_group:patchd_hosts:count", perGroup(all)},
		{"patch_group:patchd_hosts_patched_ok_30d:sum", perGroup(patchedOK)},
		{"patch_group:patchd_hosts_cycle_open:sum", perGroup(open)},
		{"patch_group:patchd_hosts_reboot_required:sum", perGroup(rebootNeeded)},
		{"patch_group:patchd_hosts_last_patch_failed:sum", perGroup(lastFailed)},
	}
	for _, c := range checks {
		eventually(t, 60*time.Second, c.rule+" = "+fmtMap(c.want), func() (bool, string) {
			s, err := prom.query(c.rule + `{job="patchd"}`)
			got := byLabel(s, "patch_group")
			return err == nil && equalMaps(got, c.want), fmtMap(got) + fmt.Sprint(err)
		})
	}
	perHost := func(rule string, set map[int]bool) {
		t.Helper()
		s, err := prom.query(rule)
		if err != nil {
			t.Fatal(err)
		}
		if len(s) != hostCount {
			t.Errorf("%s: %d series, want one per host (%d)", rule, len(s), hostCount)
		}
		for _, x := range s {
			var h *host
			for _, c := range f.hosts {
				if c.id == x.Metric["instance"] {
					h = c
				}
			}
			if h == nil || x.Metric["name"] != h.name || x.Metric["patch_group"] != h.group {
				t.Errorf("%s: series %v does not name a host of the fleet", rule, x.Metric)
				continue
			}
			if want := set[h.n]; (x.float() == 1) != want {
				t.Errorf("%s: host %d (%s) = %g, want %v", rule, h.n, h.name, x.float(), want)
			}
		}
	}
	perHost("instance:patchd_last_patch_failed:bool", lastFailed)
	perHost("instance:patchd_patched_ok_30d:bool", patchedOK)

	// 3. The held host: past its failsafe, post-patch running, the stuck
	// cycle alert names it and no other.
	eventually(t, 90*time.Second, "PatchdCycleOpenTooLong for the held host", func() (bool, string) {
		a, err := prom.firing("PatchdCycleOpenTooLong")
		_, ok := a[held.id]
		return err == nil && ok, fmt.Sprint(a, err)
	})
	if a, _ := prom.firing("PatchdCycleOpenTooLong"); len(a) != 1 {
		t.Errorf("PatchdCycleOpenTooLong fires for %d hosts, want the held host alone: %v", len(a), a)
	}
	if st, err := held.status(); err != nil || st.Current == nil || st.Current.Phase != cycle.PhasePostPatch || st.Current.Result != "timed_out" {
		t.Errorf("held host: want its cycle open in post-patch after the failsafe (timed_out): %+v %v", st.Current, err)
	}

	// 4. Every dashboard query parses and returns data from this fleet;
	// tables list hosts by instance.
	f.checkFleetTables(t, "regional", checkDashboard(t, prom, false))
	checkNoSingleHost(t)

	// The same fleet row on a global server that federates only what the
	// example federation job selects.
	global := startGlobal(t, promBin, promtool, f.root, prom)
	eventually(t, 60*time.Second, "the global server to federate every host", func() (bool, string) {
		v, ok := global.value(fmt.Sprintf(`count(patchd_build_info{region=%q})`, regionLabel))
		return ok && v == hostCount, fmt.Sprint(v, ok)
	})
	f.checkFleetTables(t, "global", checkDashboard(t, global, true))
	federated, _ := global.value(`count({__name__=~".+", instance!=""}) / count(patchd_build_info)`)
	t.Logf("global server: %.2f series per host federated, the fleet row answers from them", federated)
	if federated > 11 {
		t.Errorf("the federation job brings %g series per host; want the rules' answers and the fleet row's 8", federated)
	}

	// 5. The costs. The idle CPU is measured over a fixed window (a
	// measurement, not a wait for an event): the fleet after its wave,
	// scraped every scrapeInterval.
	cpuIdle0, idleFrom := fleetCPU(f), time.Now()
	m := measure(t, f, prom)
	window := time.NewTimer(idleWindow)
	<-window.C
	idleFor := time.Since(idleFrom)
	m.waveCPU = cpuIdle0 - cpuBefore
	m.idleCPUPerSec = (fleetCPU(f) - cpuIdle0).Seconds() / idleFor.Seconds()
	m.alertDelay = delay
	m.alertDelayFirst = a37.ActiveAt.Sub(attempts[0])
	m.wave = waveTook
	load1, _ := os.ReadFile("/proc/loadavg")
	m.load = fmt.Sprintf("%s at start, %s at end", strings.Join(strings.Fields(string(load0))[:3], " "), strings.Join(strings.Fields(string(load1))[:3], " "))
	m.total = time.Since(began)
	m.report(t)
}

// idleWindow is how long the idle fleet's CPU is measured.
const idleWindow = 20 * time.Second

// fleetCPU is the CPU time the fleet's patchd processes have used.
func fleetCPU(f *fleet) time.Duration {
	var total time.Duration
	for _, h := range f.hosts {
		s, _ := readProc(h.pid())
		total += s.cpu
	}
	return total
}

// maxScrapeGap is the longest time between two scrapes of one host in the
// last 5 minutes, from Prometheus's own sample timestamps.
func maxScrapeGap(t *testing.T, prom *prometheus, instance string) time.Duration {
	t.Helper()
	s, err := prom.query(fmt.Sprintf(`up{instance=%q}[5m]`, instance))
	if err != nil || len(s) != 1 || len(s[0].Values) < 2 {
		t.Fatalf("scrapes of %s: %v %v", instance, s, err)
	}
	var gap float64
	vs := s[0].Values
	for i := 1; i < len(vs); i++ {
		a, _ := vs[i-1][0].(float64)
		b, _ := vs[i][0].(float64)
		gap = max(gap, b-a)
	}
	return durationOf(gap)
}

func durationOf(seconds float64) time.Duration { return time.Duration(seconds * float64(time.Second)) }

// readHookFailures are the times host 37's post-patch hook failed, one per
// attempt, as the hook itself wrote them.
func readHookFailures(t *testing.T, h *host) []time.Time {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(h.dir, "post-patch-failed-at"))
	if err != nil {
		t.Fatal(err)
	}
	var out []time.Time
	for _, f := range strings.Fields(string(b)) {
		var sec float64
		if _, err := fmt.Sscan(f, &sec); err != nil {
			t.Fatalf("post-patch-failed-at: %v", err)
		}
		out = append(out, time.Unix(0, int64(sec*1e9)))
	}
	if len(out) == 0 {
		t.Fatal("host 37's post-patch hook never ran")
	}
	return out
}

// dashboard is the shipped Grafana dashboard, as far as the test reads it.
type dashboard struct {
	Templating struct {
		List []struct{ Name string }
	}
	Panels []struct {
		Type    string
		Title   string
		Targets []struct{ RefID, Expr string }
	}
}

func readDashboard(t *testing.T) dashboard {
	t.Helper()
	b, err := os.ReadFile("../grafana/patchd-dashboard.json")
	if err != nil {
		t.Fatal(err)
	}
	var d dashboard
	if err := json.Unmarshal(b, &d); err != nil {
		t.Fatalf("patchd-dashboard.json: %v", err)
	}
	return d
}

// checkFleetTables: the fleet row's tables show the failures as their
// hosts.
func (f *fleet) checkFleetTables(t *testing.T, server string, panels map[string][]sample) {
	t.Helper()
	failedRows := map[int]float64{}
	for n, v := range f.hostsIn(panels["Hosts by last patch/B"]) {
		if v == 1 {
			failedRows[n] = v
		}
	}
	if len(failedRows) != 2 || failedRows[failingPatch] != 1 || failedRows[failingHook] != 1 {
		t.Errorf("%s: dashboard table \"Hosts by last patch\": last patch failed for hosts %v; want %d and %d", server, failedRows, failingPatch, failingHook)
	}
	if got := f.hostsIn(panels["Hosts with monitoring silenced/A"]); len(got) != 1 || got[heldHost] < heldFailsafe.Seconds() {
		t.Errorf("%s: dashboard table \"Hosts with monitoring silenced\": %v; want host %d alone, open longer than %s", server, got, heldHost, heldFailsafe)
	}
}

// checkDashboard runs every panel's query (only the fleet row's when
// fleetRow) with the variables at "All".
func checkDashboard(t *testing.T, prom *prometheus, fleetRow bool) map[string][]sample {
	t.Helper()
	results := map[string][]sample{}
	d := readDashboard(t)
	repl := strings.NewReplacer("$job", ".*", "$instance", ".*", "$patch_group", ".*",
		"$__rate_interval", "1m", "$__range", "1h", "$__interval", "2s")
	rows := 0
	for _, p := range d.Panels {
		if p.Type == "row" {
			rows++
			if fleetRow && rows > 1 {
				break
			}
			continue
		}
		for _, tg := range p.Targets {
			q := repl.Replace(tg.Expr)
			if strings.Contains(q, "$") {
				t.Errorf("panel %q: query %q uses a variable the test does not know", p.Title, tg.Expr)
				continue
			}
			var s []sample
			var err error
			eventually(t, 30*time.Second, fmt.Sprintf("panel %q: data from %s", p.Title, q), func() (bool, string) {
				s, err = prom.query(q)
				return err == nil && len(s) > 0, fmt.Sprint(err)
			})
			results[p.Title+"/"+tg.RefID] = s
			if p.Type == "table" && !strings.Contains(q, "patch_group:") {
				for _, x := range s {
					if x.Metric["instance"] == "" || x.Metric["name"] == "" || x.Metric["patch_group"] == "" {
						t.Errorf("table %q: row %v does not name its host (instance, name, patch_group)", p.Title, x.Metric)
						break
					}
				}
			}
		}
	}
	if rows < 2 {
		t.Errorf("the dashboard has %d rows; want a fleet row and the per-host drill-down", rows)
	}
	if len(results) < 8 {
		t.Errorf("only %d dashboard queries ran", len(results))
	}
	return results
}

// hostsIn are the host numbers a query's result names, with the value.
func (f *fleet) hostsIn(s []sample) map[int]float64 {
	out := map[int]float64{}
	for _, x := range s {
		for _, h := range f.hosts {
			if h.id == x.Metric["instance"] {
				out[h.n] = x.float()
			}
		}
	}
	return out
}

// aggregation is an aggregation operator and its by (...) labels.
var aggregation = regexp.MustCompile(`\b(sum|count|max|min|avg)\s*(by\s*\(([^)]*)\))?\s*\(`)

// hidesHost reports whether expr aggregates without keeping instance.
func hidesHost(expr string) bool {
	for _, m := range aggregation.FindAllStringSubmatch(expr, -1) {
		if !strings.Contains(m[3], "instance") {
			return true
		}
	}
	return false
}

// checkNoSingleHost: no rule or dashboard query names one host; no alert,
// and no dashboard graph or table, aggregates its hosts away (a stat is a
// count, and the fleet row's counts read the patch_group: rules).
func checkNoSingleHost(t *testing.T) {
	t.Helper()
	var exprs []string
	for _, p := range readDashboard(t).Panels {
		for _, tg := range p.Targets {
			exprs = append(exprs, tg.Expr)
			if (p.Type == "timeseries" || p.Type == "table") && !strings.Contains(tg.Expr, "patch_group:") && hidesHost(tg.Expr) {
				t.Errorf("dashboard %s %q: %s aggregates away the host", p.Type, p.Title, tg.Expr)
			}
		}
	}
	for _, file := range []string{"../prometheus/patchd-alerts.yml", "../prometheus/patchd-fleet-rules.yml"} {
		b, err := os.ReadFile(file)
		if err != nil {
			t.Fatal(err)
		}
		for _, line := range strings.Split(string(b), "\n") {
			if strings.Contains(line, "expr:") {
				exprs = append(exprs, line)
			}
			if strings.Contains(line, "expr:") && strings.Contains(file, "alerts") && hidesHost(line) {
				t.Errorf("%s: %s aggregates away the host", file, strings.TrimSpace(line))
			}
		}
	}
	for _, e := range exprs {
		for _, bad := range []string{`instance="`, `instance=~"i-`, `instance =`} {
			if strings.Contains(e, bad) {
				t.Errorf("query names one host: %s", e)
			}
		}
	}
}

// figures are the fleet's measured costs.
type figures struct {
	rssTotal, rssMax   int64
	cpuTotal           time.Duration
	waveCPU            time.Duration
	idleCPUPerSec      float64
	seriesMax          float64
	samplesMax         float64
	samplesTotal       float64
	promRSS, promHWM   int64
	promHeadSeries     float64
	scrapeP50, scrape9 float64
	alertDelay, wave   time.Duration
	alertDelayFirst    time.Duration
	total              time.Duration
	load               string
}

func measure(t *testing.T, f *fleet, prom *prometheus) figures {
	t.Helper()
	var m figures
	for _, h := range f.hosts {
		s, err := readProc(h.pid())
		if err != nil {
			t.Fatalf("host %d: %v", h.n, err)
		}
		m.rssTotal += s.rssBytes
		m.rssMax = max(m.rssMax, s.rssBytes)
		m.cpuTotal += s.cpu
	}
	v := func(q string) float64 {
		s, err := prom.query(q)
		if err != nil || len(s) != 1 {
			t.Fatalf("%s: %v %v", q, s, err)
		}
		return s[0].float()
	}
	m.seriesMax = v(`max(count by (instance) ({job="patchd", __name__=~"patchd_.+"}))`)
	if m.seriesMax > 150 {
		t.Errorf("a host exports %g patchd_ series; the budget is 150", m.seriesMax)
	}
	m.samplesMax = v(`max(scrape_samples_scraped{job="patchd"})`)
	m.samplesTotal = v(`sum(scrape_samples_scraped{job="patchd"})`)
	s, err := prom.query(`scrape_duration_seconds{job="patchd"}[10m]`)
	if err != nil {
		t.Fatal(err)
	}
	var durs []float64
	for _, x := range s {
		for _, p := range x.Values {
			var d float64
			fmt.Sscan(p[1].(string), &d)
			durs = append(durs, d)
		}
	}
	m.scrapeP50, m.scrape9 = quantile(durs, 0.5), quantile(durs, 0.99)
	ps, err := readProc(prom.cmd.Process.Pid)
	if err != nil {
		t.Fatal(err)
	}
	m.promRSS = ps.rssBytes
	if hwm, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", prom.cmd.Process.Pid)); err == nil {
		for _, line := range strings.Split(string(hwm), "\n") {
			if v, ok := strings.CutPrefix(line, "VmHWM:"); ok {
				var kb int64
				fmt.Sscan(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), &kb)
				m.promHWM = kb * 1024
			}
		}
	}
	m.promHeadSeries, _ = prom.selfMetric("prometheus_tsdb_head_series")
	t.Logf("scrape durations: %d samples", len(durs))
	return m
}

func (m figures) report(t *testing.T) {
	mib := func(b int64) string { return fmt.Sprintf("%.1f MiB", float64(b)/(1<<20)) }
	lines := []string{
		fmt.Sprintf("fleet: %d hosts, scrape every %s, rules every %s; whole test %s, wave %s", hostCount, scrapeInterval, evalInterval, m.total.Round(time.Second), m.wave.Round(time.Millisecond)),
		fmt.Sprintf("patchd RSS: %s in total, %s per host on average, %s the largest", mib(m.rssTotal), mib(m.rssTotal/hostCount), mib(m.rssMax)),
		fmt.Sprintf("patchd CPU: %s in total over the test (rebooted hosts: since their restart); %s during the wave; %.1f ms/s for the fleet while idle (%.2f ms/s per host, scraped every %s)",
			m.cpuTotal, m.waveCPU, m.idleCPUPerSec*1000, m.idleCPUPerSec*1000/hostCount, scrapeInterval),
		fmt.Sprintf("series per host: %g patchd_ series; %g samples per scrape with go_ and process_", m.seriesMax, m.samplesMax),
		fmt.Sprintf("Prometheus: %g samples per scrape round of the fleet, %g head series; RSS %s (peak %s)", m.samplesTotal, m.promHeadSeries, mib(m.promRSS), mib(m.promHWM)),
		fmt.Sprintf("scrape duration across the fleet: p50 %.1f ms, p99 %.1f ms", m.scrapeP50*1000, m.scrape9*1000),
		fmt.Sprintf("post-patch hook failure to PatchdPostPatchHookFailed firing: %s after its last attempt (%s after the first, 3 retries 100 ms apart and doubling)",
			m.alertDelay.Round(time.Millisecond), m.alertDelayFirst.Round(time.Millisecond)),
		"load average: " + m.load,
	}
	for _, l := range lines {
		t.Log(l)
	}
	if p := os.Getenv(reportEnv); p != "" {
		if err := os.WriteFile(p, []byte(strings.Join(lines, "\n")+"\n"), 0o644); err != nil {
			t.Error(err)
		}
	}
}
