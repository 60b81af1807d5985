// Command hookbench compares `patchd hooks run` with Debian's run-parts on
// the same tree of trivial hooks (make bench-hooks). The two are run in
// pairs, interleaved and alternating which goes first, so that a load change
// on the machine hits both alike; it prints the medians of wall and CPU time
// (the process and the hooks it waited for), the median of the per-pair
// ratios, and the load average before and after, since a loaded machine
// makes any such ratio unreliable.
package main

import (
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"time"
)

func main() {
	patchd := flag.String("patchd", "build/patchd", "patchd binary to measure: the CLI build (make build), which runs hooks in process")
	runParts := flag.String("run-parts", "run-parts", "run-parts binary (debianutils)")
	hooks := flag.Int("hooks", 20, "number of trivial hooks")
	runs := flag.Int("runs", 30, "pairs of runs (at least 30 for the figure BENCHMARKS.md quotes)")
	flag.Parse()
	if err := run(*patchd, *runParts, *hooks, *runs); err != nil {
		fmt.Fprintln(os.Stderr, "hookbench:", err)
		os.Exit(1)
	}
}

func run(patchd, runParts string, n, runs int) error {
	dir, err := os.MkdirTemp("", "hookbench-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	root := filepath.Join(dir, "hooks.d")
	phase := filepath.Join(root, "pre-patch")
	if err := os.MkdirAll(phase, 0o755); err != nil {
		return err
	}
	if err := os.Chmod(dir, 0o755); err != nil {
		return err
	}
	for i := range n {
		// run-parts accepts only [A-Za-z0-9_-] names: these pass both.
		p := filepath.Join(phase, fmt.Sprintf("%02d-hook", i))
		if err := os.WriteFile(p, []byte("#!/bin/sh\nexit 0\n"), 0o755); err != nil {
			return err
		}
		if err := os.Chmod(p, 0o755); err != nil {
			return err
		}
	}
	cfg := filepath.Join(dir, "patchd.yaml")
	if err := os.WriteFile(cfg, nil, 0o644); err != nil {
		return err
	}
	pd := []string{patchd, "hooks", "run", "pre-patch", "--config.file=" + cfg, "--path.hooks=" + root}
	rp := []string{runParts, "--exit-on-error", phase}

	// One warm-up each: page cache, binary loading.
	for _, c := range [][]string{pd, rp} {
		if _, err := timeRun(c); err != nil {
			return err
		}
	}
	loadBefore := loadavg()
	var pw, pc, rw, rc, wallRatio, cpuRatio []float64
	for i := range runs {
		// Alternate which goes first, so neither always follows the other.
		first, second := pd, rp
		if i%2 == 1 {
			first, second = rp, pd
		}
		a, err := timeRun(first)
		if err != nil {
			return err
		}
		b, err := timeRun(second)
		if err != nil {
			return err
		}
		p, r := a, b
		if i%2 == 1 {
			p, r = b, a
		}
		pw, pc = append(pw, ms(p.wall)), append(pc, ms(p.cpu))
		rw, rc = append(rw, ms(r.wall)), append(rc, ms(r.cpu))
		wallRatio = append(wallRatio, ms(p.wall)/ms(r.wall))
		cpuRatio = append(cpuRatio, ms(p.cpu)/ms(r.cpu))
	}
	loadAfter := loadavg()
	fmt.Printf("hooks: %d trivial /bin/sh hooks, %d interleaved pairs\n", n, runs)
	fmt.Printf("%-18s wall median %7.2f ms (min %.2f, max %.2f)   cpu median %7.2f ms\n", "patchd hooks run", median(pw), slices.Min(pw), slices.Max(pw), median(pc))
	fmt.Printf("%-18s wall median %7.2f ms (min %.2f, max %.2f)   cpu median %7.2f ms\n", "run-parts", median(rw), slices.Min(rw), slices.Max(rw), median(rc))
	fmt.Printf("ratio patchd/run-parts, median of pairs: %.2f wall, %.2f cpu (target <= 1.20)\n", median(wallRatio), median(cpuRatio))
	fmt.Printf("load average before %s, after %s%s\n", loadBefore, loadAfter, loadVerdict(loadBefore, loadAfter))
	return nil
}

type timing struct{ wall, cpu time.Duration }

// timeRun runs one command and returns its wall time and CPU time (user and
// system, including the children it waited for: the hooks).
func timeRun(args []string) (timing, error) {
	cmd := exec.Command(args[0], args[1:]...)
	start := time.Now()
	out, err := cmd.CombinedOutput()
	d := time.Since(start)
	if err != nil {
		return timing{}, fmt.Errorf("%v: %w\n%s", args, err, out)
	}
	return timing{d, cmd.ProcessState.UserTime() + cmd.ProcessState.SystemTime()}, nil
}

// loadavg is the 1, 5 and 15 minute load average.
func loadavg() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "unknown"
	}
	f := strings.Fields(string(b))
	if len(f) < 3 {
		return "unknown"
	}
	return strings.Join(f[:3], " ")
}

// loadVerdict marks a run made on a busy machine.
func loadVerdict(loads ...string) string {
	for _, l := range loads {
		var one float64
		if _, err := fmt.Sscan(l, &one); err != nil || one > 1 {
			return " -- load above 1: re-measure on a quiet machine"
		}
	}
	return ""
}

func median(xs []float64) float64 {
	s := slices.Clone(xs)
	slices.Sort(s)
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }
