// Command hookbench compares `patchd hooks run` with Debian's run-parts on
// the same tree of trivial hooks (make bench-hooks). The two are run
// interleaved, so that a load change on the machine hits both alike, and
// the medians of the wall times are compared.
package main

import (
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"time"
)

func main() {
	patchd := flag.String("patchd", "build/patchd", "patchd binary to measure")
	runParts := flag.String("run-parts", "run-parts", "run-parts binary (debianutils)")
	hooks := flag.Int("hooks", 20, "number of trivial hooks")
	runs := flag.Int("runs", 30, "runs of each command")
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
	var tp, tr []time.Duration
	for i := range runs {
		// Alternate which goes first, so neither always follows the other.
		order := [][]string{pd, rp}
		if i%2 == 1 {
			order = [][]string{rp, pd}
		}
		for _, c := range order {
			d, err := timeRun(c)
			if err != nil {
				return err
			}
			if c[0] == patchd {
				tp = append(tp, d)
			} else {
				tr = append(tr, d)
			}
		}
	}
	mp, mr := median(tp), median(tr)
	fmt.Printf("hooks: %d trivial /bin/sh hooks, runs: %d each, interleaved\n", n, runs)
	fmt.Printf("patchd hooks run  median %8.2f ms  (min %.2f, max %.2f)\n", ms(mp), ms(slices.Min(tp)), ms(slices.Max(tp)))
	fmt.Printf("run-parts         median %8.2f ms  (min %.2f, max %.2f)\n", ms(mr), ms(slices.Min(tr)), ms(slices.Max(tr)))
	fmt.Printf("ratio patchd/run-parts: %.2f (target <= 1.20)\n", float64(mp)/float64(mr))
	return nil
}

func timeRun(args []string) (time.Duration, error) {
	cmd := exec.Command(args[0], args[1:]...)
	start := time.Now()
	out, err := cmd.CombinedOutput()
	d := time.Since(start)
	if err != nil {
		return 0, fmt.Errorf("%v: %w\n%s", args, err, out)
	}
	return d, nil
}

func median(ds []time.Duration) time.Duration {
	s := slices.Clone(ds)
	slices.Sort(s)
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }
