package main

// `make bench-cycle`: how long from a patch command's state file appearing
// in current/ to the first pre-patch hook process running, over many runs
// of the real (non-race) binary. BENCHMARKS.md records the numbers.

import (
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/patchd/patchd/agent/ssm"
	"github.com/patchd/patchd/agent/ssm/ssmsim"
)

func TestBenchCycleLatency(t *testing.T) {
	if os.Getenv("PATCHD_BENCH_CYCLE") == "" {
		t.Skip("set PATCHD_BENCH_CYCLE=1 (make bench-cycle) to run the cycle latency benchmark")
	}
	runs := 200
	if n, err := strconv.Atoi(os.Getenv("PATCHD_BENCH_CYCLE_RUNS")); err == nil && n > 0 {
		runs = n
	}
	bin := filepath.Join(t.TempDir(), "patchd")
	build := exec.Command("go", "build", "-o", bin, ".")
	build.Stderr = os.Stderr
	if err := build.Run(); err != nil {
		t.Fatal(err)
	}
	e := newCycleEnv(t)
	// One pre-patch hook that notes when it started: bash's EPOCHREALTIME
	// needs no extra process, so the stamp is the hook's own first moment.
	stamps := filepath.Join(e.tr.Root, "stamps")
	for phase, names := range cycleHooks {
		for _, n := range names {
			must(t, os.Remove(filepath.Join(e.tr.Hooks, phase, n)))
		}
	}
	must(t, os.WriteFile(filepath.Join(e.tr.Hooks, "pre-patch", "10-stamp"),
		[]byte("#!/bin/bash\necho \"$EPOCHREALTIME\" >> "+stamps+"\n"), 0o755))

	// The same hook run directly: the floor that process start-up alone
	// costs on this machine at this moment, measured between the cycles.
	baseStamps := filepath.Join(e.tr.Root, "base-stamps")
	baseHook := filepath.Join(e.tr.Root, "base-stamp")
	must(t, os.WriteFile(baseHook, []byte("#!/bin/bash\necho \"$EPOCHREALTIME\" >> "+baseStamps+"\n"), 0o755))

	args := append([]string{"run"}, e.tr.flags()...)
	args = append(args, "--web.listen-address=", "--log.level=warn", "--imds.endpoint=http://127.0.0.1:9", "--no-agent.restart")
	cmd := exec.Command(bin, args...)
	out := &syncBuffer{}
	cmd.Stdout, cmd.Stderr = out, out
	must(t, cmd.Start())
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	eventually(t, 30*time.Second, "patchd's control socket", func() bool {
		_, err := os.Stat(e.tr.Socket)
		return err == nil
	})

	var lat, base []time.Duration
	for i := 0; i < runs; i++ {
		t1 := time.Now()
		must(t, exec.Command(baseHook).Run())
		base = append(base, lastStamp(t, baseStamps).Sub(t1))

		d, err := e.agent.Submit(ssmsim.RunPatchBaseline("Install", "NoReboot"))
		must(t, err)
		t0 := time.Now()
		must(t, d.Start())
		eventually(t, 30*time.Second, "the pre-patch hook", func() bool { return countLines(stamps) == i+1 })
		lat = append(lat, lastStamp(t, stamps).Sub(t0))
		must(t, d.Finish(ssm.StatusSuccess))
		eventually(t, 30*time.Second, "the cycle to close", func() bool { return len(e.ledgerQuiet()) == min(i+1, 1000) })
	}
	report := func(what string, d []time.Duration) (p50, p99 time.Duration) {
		slices.Sort(d)
		q := func(p float64) time.Duration { return d[int(p*float64(len(d)-1))].Round(10 * time.Microsecond) }
		t.Logf("%s, %d runs: p50 %v  p90 %v  p99 %v  max %v", what, len(d), q(0.50), q(0.90), q(0.99), q(1))
		return q(0.50), q(0.99)
	}
	b50, b99 := report("baseline, fork+exec of the same hook from the test", base)
	p50, p99 := report("cycle latency, state file in current/ -> first pre-patch hook started", lat)
	t.Logf("ratio cycle latency / baseline: p50 %.2f, p99 %.2f; load average %s", p50.Seconds()/b50.Seconds(), p99.Seconds()/b99.Seconds(), loadavg())
	if p99 > 50*time.Millisecond {
		t.Logf("p99 %v is over the 50 ms target", p99)
	}
}

func countLines(path string) int {
	data, _ := os.ReadFile(path)
	return strings.Count(string(data), "\n")
}

func lastStamp(t *testing.T, path string) time.Time {
	data, err := os.ReadFile(path)
	must(t, err)
	lines := strings.Split(strings.TrimSpace(string(data)), "\n")
	sec, frac, _ := strings.Cut(lines[len(lines)-1], ".")
	s, err1 := strconv.ParseInt(sec, 10, 64)
	us, err2 := strconv.ParseInt((frac + "000000")[:6], 10, 64)
	if err1 != nil || err2 != nil {
		t.Fatalf("bad stamp %q", lines[len(lines)-1])
	}
	return time.Unix(s, us*1000)
}

// loadavg is /proc/loadavg's 1, 5 and 15 minute figures, marked when the
// machine was busy.
func loadavg() string {
	b, err := os.ReadFile("/proc/loadavg")
	f := strings.Fields(string(b))
	if err != nil || len(f) < 3 {
		return "unknown"
	}
	l := strings.Join(f[:3], " ")
	if one, err := strconv.ParseFloat(f[0], 64); err != nil || one > 1 {
		l += " (above 1: re-measure on a quiet machine)"
	}
	return l
}
