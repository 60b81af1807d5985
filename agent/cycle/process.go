package cycle

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strconv"
	"syscall"
	"time"

	"github.com/patchd/patchd/hooks"
)

// procRoot is /proc; tests do not change it, it names what is read.
const procRoot = "/proc"

// procStat returns a process's group, start time and whether it is a
// zombie, from /proc/<pid>/stat.
func procStat(pid int) (pgrp int, start uint64, zombie bool, ok bool) {
	data, err := os.ReadFile(filepath.Join(procRoot, strconv.Itoa(pid), "stat"))
	if err != nil {
		return 0, 0, false, false
	}
	// The command name is in parentheses and may contain anything: the
	// fields are counted from the last ')'.
	i := bytes.LastIndexByte(data, ')')
	if i < 0 {
		return 0, 0, false, false
	}
	f := bytes.Fields(data[i+1:])
	// f[0] is field 3 (state), f[2] field 5 (pgrp), f[19] field 22.
	if len(f) < 20 {
		return 0, 0, false, false
	}
	pgrp, err1 := strconv.Atoi(string(f[2]))
	start, err2 := strconv.ParseUint(string(f[19]), 10, 64)
	if err1 != nil || err2 != nil {
		return 0, 0, false, false
	}
	return pgrp, start, string(f[0]) == "Z", true
}

// processOf identifies the group a hook just started as.
func processOf(pgid int, boot string) *HookProcess {
	p := &HookProcess{Pgid: pgid, Boot: boot}
	if _, start, _, ok := procStat(pgid); ok {
		p.Start = start
	}
	return p
}

// alive reports whether a process of the recorded group still runs. A live
// process with the leader's pid but another start time means the pid was
// reused, which the kernel does only once the old group is empty. Zombies
// do not count: an init that does not reap must not make patchd wait.
func alive(p *HookProcess, bootID string) bool {
	if p == nil || p.Pgid <= 1 || (p.Boot != "" && bootID != "" && p.Boot != bootID) {
		return false
	}
	if _, start, zombie, ok := procStat(p.Pgid); ok && !zombie && p.Start != 0 && start != p.Start {
		return false
	}
	ents, err := os.ReadDir(procRoot)
	if err != nil {
		// Cannot look: ask the kernel whether the group has any process.
		return syscall.Kill(-p.Pgid, 0) != syscall.ESRCH
	}
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		if pgrp, _, zombie, ok := procStat(pid); ok && pgrp == p.Pgid && !zombie {
			return true
		}
	}
	return false
}

// orphanPoll is how often a waited-for orphaned group is looked at.
const orphanPoll = 100 * time.Millisecond

// hookTimeouts is the hooks runner's timeout per phase; without it the
// default applies.
type hookTimeouts interface {
	HookTimeout(p hooks.Phase) time.Duration
}

// awaitEarlierRun makes sure the run of hs that patchd was killed during
// is over before the hook starts again: it waits for the recorded process
// group to end until the hook's timeout from that run's start, then sends
// the group SIGTERM and, after hooks.DefaultKillGrace, SIGKILL, as the
// killed patchd would have. False means ctx ended first.
func (e *Engine) awaitEarlierRun(ctx context.Context, hs *HookState, phase hooks.Phase) bool {
	p := hs.Process
	boot := e.o.BootID()
	if !alive(p, boot) {
		return true
	}
	timeout := hooks.DefaultTimeout
	if r, ok := e.o.Runner.(hookTimeouts); ok {
		timeout = r.HookTimeout(phase)
	}
	deadline := hs.Start.Add(timeout)
	e.log.Warn("the hook's run that patchd was killed during is still going; waiting for it to end before running the hook again",
		"phase", hs.Phase, "hook", hs.Name, "pgid", p.Pgid, "attempt", hs.Attempt, "until", deadline)
	tick := time.NewTicker(orphanPoll)
	defer tick.Stop()
	var termAt, killAt time.Time
	for alive(p, boot) {
		now := e.clock.Now()
		switch {
		case termAt.IsZero() && !now.Before(deadline):
			e.log.Warn("the hook's earlier run outlived its timeout: SIGTERM to its process group", "phase", hs.Phase, "hook", hs.Name, "pgid", p.Pgid)
			_ = syscall.Kill(-p.Pgid, syscall.SIGTERM)
			termAt = now
		case !termAt.IsZero() && killAt.IsZero() && now.Sub(termAt) >= hooks.DefaultKillGrace:
			e.log.Warn("the hook's earlier run is still there after the grace period: SIGKILL to its process group", "phase", hs.Phase, "hook", hs.Name, "pgid", p.Pgid)
			_ = syscall.Kill(-p.Pgid, syscall.SIGKILL)
			killAt = now
		case !killAt.IsZero() && now.Sub(killAt) >= hooks.DefaultKillGrace:
			// Stuck in the kernel (uninterruptible sleep): waiting longer
			// would hold the cycle for good.
			e.log.Error("the hook's earlier run survives SIGKILL; running the hook again beside it", "phase", hs.Phase, "hook", hs.Name, "pgid", p.Pgid)
			return true
		}
		select {
		case <-ctx.Done():
			return false
		case <-tick.C:
		}
	}
	e.log.Info("the hook's earlier run has ended", "phase", hs.Phase, "hook", hs.Name, "pgid", p.Pgid)
	return true
}

// clockTicks is USER_HZ, the unit of /proc/<pid>/stat's start time: 100 on
// every Linux architecture patchd is built for.
const clockTicks = 100

// bootTime is the boot's wall-clock start from /proc/stat's btime.
func bootTime() (time.Time, bool) {
	data, err := os.ReadFile(filepath.Join(procRoot, "stat"))
	if err != nil {
		return time.Time{}, false
	}
	for _, l := range bytes.Split(data, []byte{'\n'}) {
		if v, ok := bytes.CutPrefix(l, []byte("btime ")); ok {
			s, err := strconv.ParseInt(string(bytes.TrimSpace(v)), 10, 64)
			return time.Unix(s, 0), err == nil
		}
	}
	return time.Time{}, false
}

// startWindow is how long after its recorded start a hook's process may
// have begun and still be taken for it by findStartedRun.
const startWindow = 30 * time.Second

// findStartedRun looks for the run of a hook that started while patchd
// was killed before it could record the run's process group (the moment
// between the start and that record's fsync). The run is a process group
// leader whose environment has this cycle's PATCHD_CYCLE_ID, PATCHD_PHASE
// and PATCHD_ATTEMPT, whose arguments name the hook's file, and which
// started within startWindow of the recorded start: a daemon an earlier
// hook left behind started before it, and one this run started later is
// not its leader's command.
func findStartedRun(cycleID, phase string, attempt int, target string, since time.Time, boot string) *HookProcess {
	btime, ok := bootTime()
	if !ok || target == "" {
		return nil
	}
	want := [][]byte{[]byte("PATCHD_CYCLE_ID=" + cycleID), []byte("PATCHD_PHASE=" + phase),
		[]byte("PATCHD_ATTEMPT=" + strconv.Itoa(attempt))}
	ents, err := os.ReadDir(procRoot)
	if err != nil {
		return nil
	}
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		pgrp, start, zombie, ok := procStat(pid)
		if !ok || zombie || pgrp != pid {
			continue
		}
		began := btime.Add(time.Duration(start) * time.Second / clockTicks)
		// btime is in whole seconds: a second of slack before.
		if began.Before(since.Add(-time.Second)) || began.After(since.Add(startWindow)) {
			continue
		}
		if !hasAll(filepath.Join(procRoot, e.Name(), "environ"), want) ||
			!hasAll(filepath.Join(procRoot, e.Name(), "cmdline"), [][]byte{[]byte(target)}) {
			continue
		}
		return &HookProcess{Pgid: pid, Start: start, Boot: boot}
	}
	return nil
}

// hasAll reports whether the NUL-separated file at path has every one of
// want as a whole entry.
func hasAll(path string, want [][]byte) bool {
	data, err := os.ReadFile(path)
	if err != nil {
		return false
	}
	for _, w := range want {
		found := false
		for _, f := range bytes.Split(data, []byte{0}) {
			if bytes.Equal(f, w) {
				found = true
				break
			}
		}
		if !found {
			return false
		}
	}
	return true
}
