package systemtest

import (
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"
)

// cycleConfig points the role watcher at a closed loopback port: the cycle
// scenarios must not depend on whatever answers at 169.254.169.254 on the
// machine running them.
const cycleConfig = `imds:
  endpoint: http://127.0.0.1:1
`

// needCycle skips when the packaged patchd has no cycle yet.
func needCycle(t *testing.T, h *host) {
	t.Helper()
	if !has(h.container, "history") {
		notYet(t, "the packaged patchd has no cycle (patchd history)")
	}
}

// checkOnce asserts that each phase ran exactly once and returns the
// post-patch line.
func checkOnce(t *testing.T, h *host, phases ...string) string {
	t.Helper()
	for _, p := range phases {
		if runs := h.phaseRuns(p); len(runs) != 1 {
			t.Errorf("%s hooks ran %d times, want exactly once:\n%s", p, len(runs), strings.Join(h.hookLines(), "\n"))
		}
	}
	if runs := h.phaseRuns("post-patch"); len(runs) > 0 {
		return runs[0]
	}
	return ""
}

// Scenario 3: a patch run whose payload installs a package and asks for a
// reboot; the container really reboots. patchd runs pre-patch before the
// change, pre-reboot before the reboot, and after the boot resumes the cycle
// and runs post-patch exactly once when the agent finishes the command. The
// ledger shows the reboot and the real package change.
func TestPatchCycleWithReboot(t *testing.T) {
	h := newHost(t, "patchd-e2e-reboot", cycleConfig)
	needCycle(t, h)
	copyIn(t, h.container, tools.tiny, "/var/tmp/patchd-e2e-tiny.deb")

	id := h.sim("submit", "--operation", "Install")
	h.sim("start", id)
	h.sim("step", id, "InProgress")
	h.waitPhase("pre-patch", time.Minute)
	// The payload changes packages once pre-patch is over, as in a gated
	// run (an observed one races the payload and may miss early changes).
	h.waitFor(time.Minute, "cycle waiting for the patch after pre-patch", func() bool {
		return metric(scrape(t, defaultMetrics), `patchd_cycle_phase{phase="waiting"}`) == 1
	})

	// What AWS-RunPatchBaseline's payload does: install packages, then
	// exit 194 so the agent reboots the host.
	h.run("dpkg", "-i", "/var/tmp/patchd-e2e-tiny.deb")
	h.sim("reboot", id)
	// The agent reboots a minute after SuccessAndReboot (shutdown -r +1);
	// patchd runs pre-reboot as soon as it sees that status.
	h.waitPhase("pre-reboot", time.Minute)
	bootBefore := h.run("cat", "/proc/sys/kernel/random/boot_id")
	h.reboot()
	if boot := h.run("cat", "/proc/sys/kernel/random/boot_id"); boot == bootBefore {
		t.Fatalf("boot id %s unchanged: the container did not really reboot", strings.TrimSpace(boot))
	}
	waitActive(t, h.container, "patchd.service")
	if len(h.phaseRuns("post-patch")) != 0 {
		t.Errorf("post-patch ran before the command finished:\n%s", strings.Join(h.hookLines(), "\n"))
	}

	// After the boot the agent resumes the document and finishes it.
	h.sim("resume", id)
	h.sim("finish", id)
	e := h.waitClosed(id, 2*time.Minute)

	t.Logf("hooks:\n%s\nledger: cycle %s result=%s rebooted=%v installed=%v", strings.Join(h.hookLines(), "\n"),
		e.CycleID, e.Result, e.Rebooted, e.Packages.Installed)
	post := checkOnce(t, h, "pre-patch", "pre-reboot", "post-patch")
	if !strings.Contains(post, "rebooted=1") || !strings.Contains(post, "result=success") {
		t.Errorf("post-patch saw %q, want rebooted=1 and result=success", post)
	}
	if !e.Rebooted {
		t.Errorf("ledger entry %s: rebooted=false, want true", e.CycleID)
	}
	if e.Result != "success" {
		t.Errorf("ledger entry %s: result %q, want success", e.CycleID, e.Result)
	}
	if !slices.ContainsFunc(e.Packages.Installed, func(p ledgerPackage) bool { return p.Name == "patchd-e2e-tiny" }) {
		t.Errorf("ledger entry %s: installed %v (error %q), want patchd-e2e-tiny among them", e.CycleID, e.Packages.Installed, e.PackagesError)
	}
	if out := h.run("patchd", "history"); !strings.Contains(out, id) {
		t.Errorf("patchd history does not show command %s:\n%s", id, out)
	}
}

// Scenario 4: patchd is killed with SIGKILL while the patch runs; systemd
// starts it again, it picks the open cycle up from its state file, and
// post-patch still runs exactly once when the command ends.
func TestKillDuringCycle(t *testing.T) {
	h := newHost(t, "patchd-e2e-kill", cycleConfig)
	needCycle(t, h)

	id := h.sim("submit", "--operation", "Install")
	h.sim("start", id)
	h.sim("step", id, "InProgress")
	h.waitPhase("pre-patch", time.Minute)

	pid := h.prop("patchd.service", "MainPID")
	restarts, _ := strconv.Atoi(h.prop("patchd.service", "NRestarts"))
	// kill -9 of the main process only, as the OOM killer or an operator
	// would (the shell's builtin kill: a minimal host has no /bin/kill).
	h.run("sh", "-c", "kill -9 "+pid)
	h.waitFor(time.Minute, "systemd restarting patchd after SIGKILL", func() bool {
		n, _ := strconv.Atoi(h.prop("patchd.service", "NRestarts"))
		now := h.prop("patchd.service", "MainPID")
		return n > restarts && now != "0" && now != pid && h.prop("patchd.service", "ActiveState") == "active"
	})

	h.sim("step", id, "Success")
	h.sim("finish", id)
	e := h.waitClosed(id, 2*time.Minute)
	t.Logf("hooks:\n%s", strings.Join(h.hookLines(), "\n"))
	post := checkOnce(t, h, "pre-patch", "post-patch")
	if !strings.Contains(post, "result=success") || !strings.Contains(post, "rebooted=0") {
		t.Errorf("post-patch saw %q, want result=success rebooted=0", post)
	}
	if e.Rebooted {
		t.Errorf("ledger entry %s says rebooted; only patchd restarted", e.CycleID)
	}
}
