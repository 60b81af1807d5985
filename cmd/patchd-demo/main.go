// Command patchd-demo plays one patch run on a simulated EC2 host, in a
// temporary directory, as an ordinary user: a simulated amazon-ssm-agent
// writing the agent's real state files and log lines (agent/ssm/ssmsim), a
// local IMDSv2 server, example hooks that echo what they would do, and the
// real patchd binary in the foreground. It plays a Scan (no hooks), an
// Install that asks for a reboot (patchd is stopped and started again as at
// a reboot), and a role change (patchd restarts the agent), then prints
// what happened. `make demo` builds patchd and runs it.
package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/patchd/patchd/agent/compliance/ssmtest"
	"github.com/patchd/patchd/agent/inventory"
	"github.com/patchd/patchd/agent/ssm/ssmsim"
)

const (
	instanceID   = "i-0123456789abcdef0"
	agentVersion = "3.3.1142.0"
	// stepLimit bounds every wait for patchd; the whole demo takes seconds.
	stepLimit = 20 * time.Second
	// seenCurrent counts documents patchd has seen in current/.
	seenCurrent = `patchd_agent_commands_seen_total{folder="current"}`
)

// exampleHooks are what an operator might put in /etc/patchd/hooks.d; here
// they only say what they would do.
var exampleHooks = map[string]map[string]string{
	"pre-patch": {
		"10-drain":    `echo "draining $PATCHD_INSTANCE_ID from the load balancer (cycle $PATCHD_CYCLE_ID, $PATCHD_DOCUMENT $PATCHD_OPERATION)"`,
		"20-snapshot": `echo "snapshotting the root volume before packages change"`,
	},
	"pre-reboot": {
		"10-flush": `echo "flushing application buffers before the reboot"`,
	},
	"post-patch": {
		"10-undrain": `echo "back into the load balancer (result=$PATCHD_RESULT rebooted=$PATCHD_REBOOTED)"`,
	},
}

func main() {
	patchd := flag.String("patchd", "build/patchd", "The patchd binary to run.")
	keep := flag.Bool("keep", false, "Keep the temporary host directory for a look afterwards.")
	flag.BoolVar(&verbose, "v", false, "Print every line patchd logs.")
	flag.Parse()
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	start := time.Now()
	if err := run(ctx, *patchd, *keep); err != nil {
		fmt.Fprintf(os.Stderr, "patchd-demo: %v\n", err)
		os.Exit(1)
	}
	fmt.Printf("\nDemo finished in %s; nothing left running.\n", time.Since(start).Round(100*time.Millisecond))
}

// host is the simulated host's layout, all inside one temp directory.
type host struct {
	root, config, hooks, state, agentData, agentLogs, socket string
	metrics                                                  string // host:port of /metrics
	imds                                                     string // IMDS URL
	ssm                                                      string // the local SSM endpoint's URL
	restarts                                                 string // file the restart command appends to
}

func (h host) flags() []string {
	return []string{
		"--config.file=" + h.config,
		"--path.hooks=" + h.hooks, "--path.state=" + h.state,
		"--path.agent-data=" + h.agentData, "--path.agent-logs=" + h.agentLogs,
		"--control.socket=" + h.socket,
	}
}

func run(ctx context.Context, bin string, keep bool) error {
	bin, err := filepath.Abs(bin)
	if err != nil {
		return err
	}
	if _, err := os.Stat(bin); err != nil {
		return fmt.Errorf("patchd binary: %w (run make build, or pass --patchd)", err)
	}
	root, err := os.MkdirTemp("", "patchd-demo-")
	if err != nil {
		return err
	}
	if keep {
		fmt.Printf("host directory kept: %s\n", root)
	} else {
		defer os.RemoveAll(root)
	}
	h := host{
		root: root, config: filepath.Join(root, "patchd.yaml"), hooks: filepath.Join(root, "hooks.d"),
		state: filepath.Join(root, "state"), agentData: filepath.Join(root, "amazon-ssm"),
		agentLogs: filepath.Join(root, "amazon-ssm-logs"), socket: filepath.Join(root, "patchd.sock"),
		restarts: filepath.Join(root, "agent-restarts"),
	}

	imds, err := startIMDS("demo-role-a")
	if err != nil {
		return err
	}
	defer imds.Close()
	h.imds = imds.URL
	// Systems Manager itself, as a local endpoint that checks every
	// request against the API's rules; the SDK signs with the role's
	// credentials from the IMDS above.
	ssmSrv := ssmtest.New()
	defer ssmSrv.Close()
	h.ssm = ssmSrv.URL
	if h.metrics, err = freeAddr(); err != nil {
		return err
	}
	if err := writeHost(h); err != nil {
		return err
	}
	agent := ssmsim.New(h.agentData, instanceID, h.agentLogs)
	if err := agent.Init(); err != nil {
		return err
	}
	_ = agent.Log.Line("INFO", "[amazon-ssm-agent]", "amazon-ssm-agent - v"+agentVersion)

	fmt.Printf("A simulated EC2 host in %s: amazon-ssm-agent (simulated), IMDSv2 at %s, Systems Manager at %s, hooks in hooks.d/.\n", root, h.imds, h.ssm)
	p, err := startPatchd(ctx, bin, h)
	if err != nil {
		return err
	}
	defer func() { p.stop() }()
	if _, err := p.wait(ctx, "patchd started", nil); err != nil {
		return err
	}
	if _, err := p.wait(ctx, "instance identity baseline", nil); err != nil {
		return err
	}
	// A real agent's documents run for minutes; the simulated one is quick,
	// so each step waits until patchd has seen the last one.
	metrics := "http://" + h.metrics + "/metrics"
	if err := waitMetric(ctx, metrics, "patchd_agent_data_watched", 1); err != nil {
		return err
	}

	scene("1. AWS-RunPatchBaseline, Operation=Scan: observed, no hooks")
	scan, err := submit(agent, "Scan")
	if err != nil {
		return err
	}
	if err := firstErr(scan.Start, func() error { return waitMetric(ctx, metrics, seenCurrent, 1) },
		func() error { return scan.RunStep("") }, func() error { return scan.Finish("Success") }); err != nil {
		return err
	}
	if _, err := p.wait(ctx, "patch command needs no hooks", nil); err != nil {
		return err
	}

	scene("2. AWS-RunPatchBaseline, Operation=Install, asks for a reboot")
	inst, err := submit(agent, "Install")
	if err != nil {
		return err
	}
	if err := firstErr(inst.Start, func() error { return inst.RunStep("") }); err != nil {
		return err
	}
	if _, err := p.wait(ctx, "phase done", attr("phase", "pre-patch")); err != nil {
		return err
	}
	fmt.Println("   (the patch payload installs packages, then exits 194: SuccessAndReboot)")
	if err := inst.RequestReboot(""); err != nil {
		return err
	}
	if _, err := p.wait(ctx, "phase done", attr("phase", "pre-reboot")); err != nil {
		return err
	}
	fmt.Println("   (the host reboots: patchd is stopped, and started again after the boot)")
	if err := p.stop(); err != nil {
		return fmt.Errorf("stopping patchd as at a reboot: %w", err)
	}
	if p, err = startPatchd(ctx, bin, h); err != nil {
		return err
	}
	if _, err := p.wait(ctx, "patchd started", nil); err != nil {
		return err
	}
	// The agent resumes its document some seconds after the boot; here it
	// waits until patchd has found the document in current/ again.
	if err := waitMetric(ctx, metrics, seenCurrent, 1); err != nil {
		return err
	}
	fmt.Println("   (the agent resumes the document after the boot and finishes it)")
	if err := firstErr(inst.Resume, func() error { return inst.Finish("Success") }); err != nil {
		return err
	}
	if _, err := p.wait(ctx, "patch cycle closed", nil); err != nil {
		return err
	}
	if _, err := p.wait(ctx, "compliance report delivered", nil); err != nil {
		return err
	}

	scene("3. The instance's IAM role changes: patchd restarts amazon-ssm-agent")
	imds.SetRole("demo-role-b")
	if _, err := p.wait(ctx, "amazon-ssm-agent restarted and active", nil); err != nil {
		return err
	}

	scene("What the hooks printed")
	for _, l := range p.hookLines() {
		fmt.Println("   " + l)
	}
	for _, c := range []struct {
		title string
		args  []string
	}{
		{"patchd status", []string{"status"}},
		{"patchd history", []string{"history"}},
	} {
		scene(c.title)
		out, err := exec.CommandContext(ctx, bin, append([]string{c.args[0]}, append(h.flags(), c.args[1:]...)...)...).CombinedOutput()
		fmt.Print(indent(string(out)))
		if err != nil {
			return fmt.Errorf("%s: %w", c.title, err)
		}
	}
	scene("What Systems Manager received: PutComplianceItems, type Custom:patchd")
	printCompliance(ssmSrv)
	scene("The custom inventory the agent uploads: " + filepath.Join("amazon-ssm", instanceID, "inventory", "custom", inventory.CyclesFile))
	if err := printInventory(filepath.Join(h.agentData, instanceID, "inventory", "custom")); err != nil {
		return err
	}
	scene("An excerpt of /metrics (" + metrics + ")")
	if err := printMetrics(ctx, metrics); err != nil {
		return err
	}
	return p.stop()
}

func scene(title string) { fmt.Printf("\n== %s\n", title) }

func indent(s string) string {
	var b strings.Builder
	for _, l := range strings.Split(strings.TrimRight(s, "\n"), "\n") {
		b.WriteString("   " + l + "\n")
	}
	return b.String()
}

func firstErr(fns ...func() error) error {
	for _, f := range fns {
		if err := f(); err != nil {
			return err
		}
	}
	return nil
}

func submit(a *ssmsim.Agent, operation string) (*ssmsim.Doc, error) {
	spec, err := ssmsim.Template("run-patch-baseline", operation, "RebootIfNeeded", "", false)
	if err != nil {
		return nil, err
	}
	return a.Submit(spec)
}

// writeHost writes patchd's configuration and the example hooks. The hook
// tree must not be group- or world-writable whatever the umask is: patchd
// refuses hooks there.
func writeHost(h host) error {
	config := fmt.Sprintf(`# The simulated host's patchd configuration.
web:
  listen_address: %q
imds:
  endpoint: %q
  poll_interval: 1s
agent:
  service: command
  # The agent's start banner, as a restarted agent writes it.
  restart_command: >-
    echo restarted >> %s &&
    echo "$(date '+%%Y-%%m-%%d %%H:%%M:%%S.0000') INFO [amazon-ssm-agent] amazon-ssm-agent - v%s" >> %s
host_state:
  interval: 1h
ssm:
  report: "on"
  endpoint: %q
`, h.metrics, h.imds, h.restarts, agentVersion, filepath.Join(h.agentLogs, ssmsim.AgentLogName), h.ssm)
	if err := os.WriteFile(h.config, []byte(config), 0o644); err != nil {
		return err
	}
	for phase, hooks := range exampleHooks {
		dir := filepath.Join(h.hooks, phase)
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return err
		}
		for name, body := range hooks {
			p := filepath.Join(dir, name)
			if err := os.WriteFile(p, []byte("#!/bin/sh\n"+body+"\n"), 0o755); err != nil {
				return err
			}
			if err := os.Chmod(p, 0o755); err != nil {
				return err
			}
		}
		if err := os.Chmod(dir, 0o755); err != nil {
			return err
		}
	}
	return os.Chmod(h.hooks, 0o755)
}

func freeAddr() (string, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	defer l.Close()
	return l.Addr().String(), nil
}

// verbose prints patchd's whole log, not only the story.
var verbose bool

// record is one line of patchd's JSON log.
type record map[string]any

func (r record) str(k string) string { s, _ := r[k].(string); return s }

func attr(k, v string) func(record) bool { return func(r record) bool { return r.str(k) == v } }

// shown are the log messages the demo echoes while patchd runs: the story
// of the run, without the start-up chatter.
var shown = []string{
	"patchd started", "patchd stopping", "instance identity baseline", "patch command needs no hooks", "patch cycle opened",
	"phase starting", "phase done", "the agent asked for a reboot", "the agent log says a reboot was requested",
	"resuming patch cycle", "patch command ended",
	"patch cycle closed", "instance role changed", "restart of amazon-ssm-agent requested",
	"amazon-ssm-agent restarted and active", "compliance report delivered",
}

// printCompliance shows the items of the last accepted report.
func printCompliance(srv *ssmtest.Server) {
	acc := srv.Accepted()
	if bad := srv.Invalid(); len(bad) > 0 {
		fmt.Printf("   refused as invalid: %v\n", bad)
	}
	if len(acc) == 0 {
		fmt.Println("   (nothing)")
		return
	}
	r := acc[len(acc)-1]
	fmt.Printf("   resource %s (%s), execution %s %s at %s, signed with %s for %s\n", r.ResourceId, r.ResourceType,
		r.ExecutionSummary.ExecutionType, r.ExecutionSummary.ExecutionId,
		time.Unix(int64(r.ExecutionSummary.ExecutionTime), 0).UTC().Format(time.RFC3339), r.AccessKey, r.Region)
	fmt.Printf("   %-24s %-14s %-9s %s\n", "ID", "STATUS", "SEVERITY", "DETAILS")
	for _, it := range r.Items {
		keys := make([]string, 0, len(it.Details))
		for k := range it.Details {
			if it.Details[k] != "" && k != "CycleId" {
				keys = append(keys, k)
			}
		}
		slices.Sort(keys)
		var det []string
		for _, k := range keys {
			det = append(det, k+"="+it.Details[k])
		}
		fmt.Printf("   %-24s %-14s %-9s %s\n", it.Id, it.Status, it.Severity, strings.Join(det, " "))
	}
}

// printInventory shows the cycles file as the agent reads it.
func printInventory(dir string) error {
	data, err := os.ReadFile(filepath.Join(dir, inventory.CyclesFile))
	if err != nil {
		return err
	}
	var f inventory.File
	if err := json.Unmarshal(data, &f); err != nil {
		return err
	}
	out, _ := json.MarshalIndent(f, "", "  ")
	fmt.Print(indent(string(out)))
	pk, err := os.ReadFile(filepath.Join(dir, inventory.PackagesFile))
	if err != nil {
		return err
	}
	var p inventory.File
	if err := json.Unmarshal(pk, &p); err != nil {
		return err
	}
	fmt.Printf("   (and %s: %d package changes)\n", inventory.PackagesFile, len(p.Content))
	return nil
}

// proc is one run of `patchd run`, its log read line by line.
type proc struct {
	cmd    *exec.Cmd
	exited chan struct{} // closed when patchd has exited
	err    error         // its exit, valid once exited is closed
	logs   chan record

	mu sync.Mutex
	// stopped makes stop idempotent.
	stopped bool
	stopErr error
}

// hookOutput remembers every hook's output across patchd restarts.
var hookOutput struct {
	mu    sync.Mutex
	lines []string
}

func startPatchd(ctx context.Context, bin string, h host) (*proc, error) {
	args := append([]string{"run"}, h.flags()...)
	args = append(args, "--log.format=json")
	cmd := exec.Command(bin, args...)
	cmd.Stdout = os.Stdout
	stderr, err := cmd.StderrPipe()
	if err != nil {
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("starting %s: %w", bin, err)
	}
	p := &proc{cmd: cmd, exited: make(chan struct{}), logs: make(chan record, 256)}
	go func() {
		// Read the log to its end before Wait, which closes the pipe.
		p.read(stderr)
		close(p.logs)
		p.err = cmd.Wait()
		close(p.exited)
	}()
	go func() {
		// Ctrl-C: stop patchd cleanly rather than leave it running.
		select {
		case <-ctx.Done():
			_ = p.stop()
		case <-p.exited:
		}
	}()
	return p, nil
}

func (p *proc) read(r io.Reader) {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64*1024), 1024*1024)
	for sc.Scan() {
		var rec record
		if json.Unmarshal(sc.Bytes(), &rec) != nil {
			fmt.Println("patchd | " + sc.Text())
			continue
		}
		msg := rec.str("msg")
		if verbose {
			fmt.Println("patchd > " + sc.Text())
		}
		switch {
		case msg == "hook output":
			line := fmt.Sprintf("%s/%s: %s", rec.str("phase"), rec.str("hook"), rec.str("line"))
			hookOutput.mu.Lock()
			hookOutput.lines = append(hookOutput.lines, line)
			hookOutput.mu.Unlock()
			fmt.Println("  hook | " + line)
		case slices.Contains(shown, msg):
			fmt.Println("patchd | " + summary(rec))
			// Only the story's records go to wait; the buffer holds far
			// more than one run logs of them.
			select {
			case p.logs <- rec:
			default:
			}
		case rec.str("level") == "ERROR":
			fmt.Println("patchd | " + summary(rec))
		}
	}
}

// summary prints a log record as msg and its interesting attributes.
func summary(r record) string {
	var b strings.Builder
	b.WriteString(r.str("msg"))
	for _, k := range []string{"identity", "phase", "document", "document_name", "operation", "result", "rebooted", "failed", "reason", "role", "took", "err"} {
		if k == "reason" && r.str("msg") == "instance role changed" {
			continue // a sentence repeating the old and new profile; role says it
		}
		if v, ok := r[k]; ok && v != "" {
			fmt.Fprintf(&b, " %s=%v", k, v)
		}
	}
	return b.String()
}

// wait returns the first log record with msg (and match, when given) from
// now on, or an error when patchd exits or stepLimit passes.
func (p *proc) wait(ctx context.Context, msg string, match func(record) bool) (record, error) {
	limit := time.NewTimer(stepLimit)
	defer limit.Stop()
	for {
		select {
		case rec, ok := <-p.logs:
			if !ok {
				return nil, fmt.Errorf("patchd exited while the demo waited for %q", msg)
			}
			if rec.str("msg") == msg && (match == nil || match(rec)) {
				return rec, nil
			}
		case <-limit.C:
			return nil, fmt.Errorf("patchd did not log %q within %s", msg, stepLimit)
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
}

func (p *proc) hookLines() []string {
	hookOutput.mu.Lock()
	defer hookOutput.mu.Unlock()
	return slices.Clone(hookOutput.lines)
}

// stop sends SIGTERM, as systemd does at a reboot, and waits for patchd to
// exit (SIGKILL after a bound, so the demo never leaves it behind).
func (p *proc) stop() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.stopped {
		return p.stopErr
	}
	p.stopped = true
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.exited:
		p.stopErr = p.err
	case <-time.After(30 * time.Second):
		_ = p.cmd.Process.Kill()
		<-p.exited
		p.stopErr = errors.New("patchd did not stop within 30s of SIGTERM; killed")
	}
	return p.stopErr
}

// waitMetric polls /metrics until the sample is at least min.
func waitMetric(ctx context.Context, url, sample string, min float64) error {
	limit := time.NewTimer(stepLimit)
	defer limit.Stop()
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for {
		if body, err := getBody(ctx, url); err == nil {
			for _, l := range strings.Split(body, "\n") {
				if v, ok := strings.CutPrefix(l, sample+" "); ok {
					if f, err := strconv.ParseFloat(v, 64); err == nil && f >= min {
						return nil
					}
				}
			}
		}
		select {
		case <-tick.C:
		case <-limit.C:
			return fmt.Errorf("%s stayed below %v for %s", sample, min, stepLimit)
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

func getBody(ctx context.Context, url string) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	return string(body), err
}

// printMetrics prints the patchd_* samples a newcomer cares about.
func printMetrics(ctx context.Context, url string) error {
	body, err := getBody(ctx, url)
	if err != nil {
		return err
	}
	prefixes := []string{"patchd_cycles_total", "patchd_cycle_active", "patchd_hook_runs_total",
		"patchd_last_cycle_success", "patchd_agent_restarts_total", "patchd_role_info", "patchd_role_changes_total",
		"patchd_agent_up", "patchd_commands_seen_total", "patchd_ssm_report_last_success_timestamp_seconds"}
	for _, l := range strings.Split(body, "\n") {
		if strings.HasPrefix(l, "#") {
			continue
		}
		for _, p := range prefixes {
			if strings.HasPrefix(l, p) && !strings.HasSuffix(l, " 0") {
				fmt.Println("   " + l)
				break
			}
		}
	}
	return nil
}
