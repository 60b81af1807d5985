package fleettest

import (
	"bufio"
	"errors"
	"fmt"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/patchd/patchd/agent/cycle"
	"github.com/patchd/patchd/agent/ledger"
	"github.com/patchd/patchd/agent/ssm"
	"github.com/patchd/patchd/agent/ssm/ssmsim"
)

// host is one simulated EC2 instance: its own loopback address, agent
// data and logs, hooks, state, control socket and reboot marker, and the
// real patchd release binary running on them.
type host struct {
	n                      int
	id, name, group, addr  string
	dir, hooks, state      string
	agentData, agentLogs   string
	socket, marker, events string
	fifo                   string // the post-patch hook of the held host blocks on it
	agent                  *ssmsim.Agent
	args                   []string
	env                    []string

	mu   sync.Mutex
	proc *process
}

// process is one run of patchd, in its own process group.
type process struct {
	cmd  *exec.Cmd
	out  *lockedBuffer
	done chan struct{}
}

type lockedBuffer struct {
	mu sync.Mutex
	b  strings.Builder
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.b.Len() < 1<<20 {
		l.b.Write(p)
	}
	return len(p), nil
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// start runs patchd; the caller waits for what it needs.
func (h *host) start() error {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.proc != nil {
		select {
		case <-h.proc.done:
		default:
			return fmt.Errorf("host %d: patchd already runs", h.n)
		}
	}
	cmd := exec.Command(patchdBin, h.args...)
	cmd.Env = h.env
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	p := &process{cmd: cmd, out: &lockedBuffer{}, done: make(chan struct{})}
	cmd.Stdout, cmd.Stderr = p.out, p.out
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("host %d: start patchd: %w", h.n, err)
	}
	go func() { _ = cmd.Wait(); close(p.done) }()
	h.proc = p
	return nil
}

// stop ends patchd with SIGTERM (the host shutting down) and waits for it;
// after within, the whole process group is killed.
func (h *host) stop(within time.Duration) error {
	h.mu.Lock()
	p := h.proc
	h.mu.Unlock()
	if p == nil {
		return nil
	}
	select {
	case <-p.done:
		return nil
	default:
	}
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	timer := time.NewTimer(within)
	defer timer.Stop()
	select {
	case <-p.done:
		return nil
	case <-timer.C:
		_ = syscall.Kill(-p.cmd.Process.Pid, syscall.SIGKILL)
		<-p.done
		return fmt.Errorf("host %d: patchd did not stop within %s after SIGTERM; killed its process group", h.n, within)
	}
}

func (h *host) pid() int {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.proc == nil {
		return 0
	}
	return h.proc.cmd.Process.Pid
}

func (h *host) output() string {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.proc == nil {
		return ""
	}
	return h.proc.out.String()
}

func (h *host) exited() bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.proc == nil {
		return true
	}
	select {
	case <-h.proc.done:
		return true
	default:
		return false
	}
}

// waitFor polls cond (patchd's files, read as a user would) until it
// holds; it fails when patchd exits or within passes.
func (h *host) waitFor(what string, within time.Duration, cond func() bool) error {
	deadline := time.NewTimer(within)
	defer deadline.Stop()
	tick := time.NewTicker(25 * time.Millisecond)
	defer tick.Stop()
	for !cond() {
		if h.exited() {
			return fmt.Errorf("host %d: patchd exited while waiting for %s:\n%s", h.n, what, h.output())
		}
		select {
		case <-deadline.C:
			return fmt.Errorf("host %d: timed out after %s waiting for %s", h.n, within, what)
		case <-tick.C:
		}
	}
	return nil
}

func (h *host) status() (cycle.Status, error) { return cycle.StatusFromFile(h.state) }

func (h *host) ledger() []ledger.Entry {
	en, _, _ := ledger.Read(filepath.Join(h.state, ledger.FileName), 0)
	return en
}

// waiting reports whether the open cycle is past pre-patch.
func (h *host) waiting() bool {
	st, err := h.status()
	return err == nil && st.Current != nil && (st.Current.Phase == cycle.PhaseWaiting || st.Current.RebootRequested)
}

func (h *host) phaseDone(phase string) bool {
	st, err := h.status()
	return err == nil && st.Current != nil && st.Current.Phases[phase] != nil && st.Current.Phases[phase].Done
}

// synced: patchd has recorded the steps as the agent last wrote them, so
// the result it gives hooks does not depend on whether it read the state
// file before the agent deleted it.
func (h *host) synced(d *ssmsim.Doc) bool {
	want := d.State.PluginStatuses()
	st, err := h.status()
	return err == nil && st.Current != nil && st.Current.Document.DocumentID == d.ID() && maps.Equal(st.Current.Document.Steps, want)
}

// outcome is what the maintenance window learns from one invocation.
type outcome struct {
	host     int
	ok       bool   // the invocation succeeded
	result   string // the cycle's result in the ledger
	hookFail bool   // a post-patch hook failed (after its retries)
	rebooted bool
	err      error // the test itself could not drive the host
}

const stepTimeout = 90 * time.Second

// patch plays one AWS-RunPatchBaseline Install on the host as the agent
// runs it for a maintenance window task, through the reboot when reboot
// is set, and waits for patchd to close the cycle.
func (h *host) patch(status string, reboot bool) outcome {
	o := outcome{host: h.n}
	fail := func(err error) outcome { o.err = err; return o }
	option := "NoReboot"
	if reboot {
		option = "RebootIfNeeded"
	}
	d, err := h.agent.Submit(ssmsim.RunPatchBaseline("Install", option))
	if err != nil {
		return fail(err)
	}
	if err := d.Start(); err != nil {
		return fail(err)
	}
	if err := d.RunStep(""); err != nil {
		return fail(err)
	}
	if err := h.waitFor("pre-patch to finish", stepTimeout, h.waiting); err != nil {
		return fail(err)
	}
	if reboot {
		if err := d.RequestReboot("PatchLinux"); err != nil {
			return fail(err)
		}
		if err := h.waitFor("pre-reboot to finish", stepTimeout, func() bool { return h.phaseDone(cycle.PhasePreReboot) }); err != nil {
			return fail(err)
		}
		// The reboot: patchd stops (its pre-reboot already ran), the
		// reboot marker in /run is gone, patchd starts with the boot.
		if err := h.stop(60 * time.Second); err != nil {
			return fail(err)
		}
		if err := os.Remove(h.marker); err != nil && !errors.Is(err, os.ErrNotExist) {
			return fail(err)
		}
		if err := h.start(); err != nil {
			return fail(err)
		}
		if err := d.Resume(); err != nil {
			return fail(err)
		}
	}
	code := 0
	if status != ssm.StatusSuccess {
		code = 1
	}
	if err := d.FinishStep("", status, code, "patched\n"); err != nil {
		return fail(err)
	}
	if err := h.waitFor("patchd to read the step's end", stepTimeout, func() bool { return h.synced(d) }); err != nil {
		return fail(err)
	}
	if err := d.Finish(status); err != nil {
		return fail(err)
	}
	if err := h.waitFor("the cycle to close", stepTimeout, func() bool { return len(h.ledger()) >= 1 }); err != nil {
		return fail(err)
	}
	last := h.ledger()[len(h.ledger())-1]
	o.result, o.rebooted = last.Result, last.Rebooted
	final := map[string]string{}
	for _, r := range last.Hooks {
		if r.Phase == cycle.PhasePostPatch {
			final[r.Name] = r.Outcome
		}
	}
	for _, out := range final {
		if out != "success" {
			o.hookFail = true
		}
	}
	// The task's document reports the patch run and, through its last
	// step, the post-patch hooks: either failing is an error.
	o.ok = o.result == "success" && !o.hookFail
	return o
}

// procStat is what /proc says about one process: resident memory and CPU
// time used so far.
type procStat struct {
	rssBytes int64
	cpu      time.Duration
}

// clockTick is USER_HZ, 100 on every Linux architecture Go supports.
const clockTick = 100

func readProc(pid int) (procStat, error) {
	var s procStat
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return s, err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "VmRSS:"); ok {
			kb, _ := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
			s.rssBytes = kb * 1024
		}
	}
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return s, err
	}
	// Fields after the command name, which ends with the last ')'.
	fields := strings.Fields(string(b[strings.LastIndexByte(string(b), ')')+1:]))
	if len(fields) < 13 {
		return s, fmt.Errorf("/proc/%d/stat: too few fields", pid)
	}
	utime, _ := strconv.ParseInt(fields[11], 10, 64)
	stime, _ := strconv.ParseInt(fields[12], 10, 64)
	s.cpu = time.Duration(utime+stime) * time.Second / clockTick
	return s, nil
}

// leftovers lists processes whose command line or working directory is
// under root: whatever the test started and did not end.
func leftovers(root string) []string {
	var out []string
	ents, _ := os.ReadDir("/proc")
	self := os.Getpid()
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || pid == self {
			continue
		}
		cmdline, _ := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
		cwd, _ := os.Readlink(fmt.Sprintf("/proc/%d/cwd", pid))
		line := strings.ReplaceAll(string(cmdline), "\x00", " ")
		if strings.Contains(line, root) || strings.HasPrefix(cwd, root) {
			out = append(out, fmt.Sprintf("pid %d: %s", pid, line))
		}
	}
	return out
}
