package startuptest

import (
	"bufio"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"
)

// TestBenchStartup is `make bench-startup`: what a CLI command costs from
// exec to exit, each against a baseline run in the same loop, interleaved
// and alternating which goes first:
//   - patchd version (the CLI build, what operators type) against a Go
//     program that only prints (the floor any Go binary pays: runtime
//     start-up); target: patchd version <= 3 ms CPU; then the full binary
//     (patchd-daemon version) against the same floor, for what the CLI
//     saves;
//   - patchd status, and a gate round (gate pre-patch, then gate
//     post-patch, which opens and closes a cycle with no hooks), against a
//     running daemon, each against patchd version (this binary's own floor).
//
// It prints medians of wall and CPU time, the median of the per-pair ratios,
// and the load average before and after. PATCHD_BENCH_STARTUP_RUNS sets the
// pairs (default 30).
func TestBenchStartup(t *testing.T) {
	if os.Getenv("PATCHD_BENCH_STARTUP") != "1" {
		t.Skip("set PATCHD_BENCH_STARTUP=1 (make bench-startup)")
	}
	runs := 30
	if n, err := strconv.Atoi(os.Getenv("PATCHD_BENCH_STARTUP_RUNS")); err == nil && n > 0 {
		runs = n
	}
	bin := buildRelease(t)
	hello := buildHello(t)
	load0 := loadavg()

	version := []string{bin, "version"}
	report(t, "patchd version", "go hello", pairs(t, runs, version, []string{hello}), 3)
	daemonVersion := []string{filepath.Join(filepath.Dir(bin), "patchd-daemon"), "version"}
	report(t, "patchd-daemon version", "go hello", pairs(t, runs, daemonVersion, []string{hello}), 0)

	tree := startDaemon(t, bin)
	status := append([]string{bin, "status"}, tree...)
	report(t, "patchd status", "patchd version", pairs(t, runs, status, version), 0)
	gatePre := append([]string{bin, "gate", "pre-patch", "--wait-for-patch"}, tree...)
	gatePost := append([]string{bin, "gate", "post-patch", "--result=success"}, tree...)
	report(t, "gate pre-patch + post-patch", "2x patchd version", pairs(t, runs, [][]string{gatePre, gatePost}, [][]string{version, version}), 0)

	load1 := loadavg()
	verdict := ""
	if busy(load0) || busy(load1) {
		verdict = " -- load above 1: re-measure on a quiet machine"
	}
	fmt.Printf("load average before %s, after %s%s\n", load0, load1, verdict)
}

// timing is one run: wall time and CPU time (user + system) in ms.
type timing struct{ wall, cpu float64 }

// pairs runs a and b (each a command, or a sequence of commands timed as
// one) runs times each, interleaved.
func pairs[C []string | [][]string](t *testing.T, runs int, a, b C) [2][]timing {
	t.Helper()
	seq := func(c C) [][]string {
		switch v := any(c).(type) {
		case []string:
			return [][]string{v}
		case [][]string:
			return v
		}
		return nil
	}
	run := func(cmds [][]string) timing {
		var sum timing
		for _, c := range cmds {
			cmd := exec.Command(c[0], c[1:]...)
			start := time.Now()
			out, err := cmd.CombinedOutput()
			wall := time.Since(start)
			if err != nil {
				t.Fatalf("%s: %v\n%s", strings.Join(c, " "), err, out)
			}
			sum.wall += ms(wall)
			sum.cpu += ms(cmd.ProcessState.UserTime() + cmd.ProcessState.SystemTime())
		}
		return sum
	}
	sa, sb := seq(a), seq(b)
	run(sa) // warm-up: page cache, the daemon's first answer
	run(sb)
	var out [2][]timing
	for i := range runs {
		if i%2 == 0 {
			out[0] = append(out[0], run(sa))
			out[1] = append(out[1], run(sb))
		} else {
			out[1] = append(out[1], run(sb))
			out[0] = append(out[0], run(sa))
		}
	}
	return out
}

// report prints one comparison; targetCPU > 0 is a target for a's CPU
// median in ms, said to be met or not (never enforced: a loaded machine
// would fail it).
func report(t *testing.T, a, b string, r [2][]timing, targetCPU float64) {
	t.Helper()
	col := func(ts []timing, f func(timing) float64) []float64 {
		var xs []float64
		for _, x := range ts {
			xs = append(xs, f(x))
		}
		return xs
	}
	wall := func(x timing) float64 { return x.wall }
	cpu := func(x timing) float64 { return x.cpu }
	var wr, cr []float64
	for i := range r[0] {
		wr = append(wr, r[0][i].wall/r[1][i].wall)
		cr = append(cr, r[0][i].cpu/r[1][i].cpu)
	}
	for i, name := range []string{a, b} {
		fmt.Printf("%-28s wall median %7.2f ms (min %.2f)   cpu median %6.2f ms (min %.2f)\n", name,
			median(col(r[i], wall)), slices.Min(col(r[i], wall)), median(col(r[i], cpu)), slices.Min(col(r[i], cpu)))
	}
	line := fmt.Sprintf("ratio %s / %s, median of %d pairs: %.2f wall, %.2f cpu", a, b, len(r[0]), median(wr), median(cr))
	if targetCPU > 0 {
		verdict := "met"
		if median(col(r[0], cpu)) > targetCPU {
			verdict = "NOT met"
		}
		line += fmt.Sprintf("; target %s <= %.0f ms cpu: %s", a, targetCPU, verdict)
	}
	fmt.Println(line)
}

// buildHello builds the baseline: a Go program that prints one line, built
// like patchd.
func buildHello(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	src := filepath.Join(dir, "hello.go")
	if err := os.WriteFile(src, []byte("package main\n\nimport \"fmt\"\n\nfunc main() { fmt.Println(\"hello\") }\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	bin := filepath.Join(dir, "hello")
	build := exec.Command("go", "build", "-trimpath", "-ldflags=-s -w", "-o", bin, src)
	build.Dir = dir
	build.Env = append(os.Environ(), "CGO_ENABLED=0", "GO111MODULE=off")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build hello: %v\n%s", err, out)
	}
	return bin
}

// startDaemon runs `patchd run` (the CLI execs patchd-daemon) on a temp tree (no hooks, no metrics
// listener, no IMDS, restarts off) until the test ends, and returns the
// flags that point a CLI command at it.
func startDaemon(t *testing.T, bin string) []string {
	t.Helper()
	root := t.TempDir()
	if err := os.Chmod(root, 0o755); err != nil {
		t.Fatal(err)
	}
	sockDir, err := os.MkdirTemp("", "pdb") // unix socket paths are short
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(sockDir) })
	for _, d := range []string{"hooks/pre-patch", "hooks/pre-reboot", "hooks/post-patch", "state", "ssm", "logs"} {
		if err := os.MkdirAll(filepath.Join(root, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	cfg := filepath.Join(root, "patchd.yaml")
	if err := os.WriteFile(cfg, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	tree := []string{
		"--config.file=" + cfg,
		"--path.hooks=" + filepath.Join(root, "hooks"),
		"--path.state=" + filepath.Join(root, "state"),
		"--path.agent-data=" + filepath.Join(root, "ssm"),
		"--path.agent-logs=" + filepath.Join(root, "logs"),
		"--control.socket=" + filepath.Join(sockDir, "s"),
	}
	args := append([]string{"run", "--web.listen-address=", "--imds.endpoint=http://127.0.0.1:9", "--no-agent.restart"}, tree...)
	cmd := exec.Command(bin, args...)
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
	})
	// "patchd started" is logged once every part runs, the control socket
	// included; the rest of the log is read and dropped.
	sc := bufio.NewScanner(stderr)
	var seen []string
	for sc.Scan() {
		seen = append(seen, sc.Text())
		if strings.Contains(sc.Text(), "patchd started") {
			go func() { _, _ = io.Copy(io.Discard, stderr) }()
			return tree
		}
	}
	t.Fatalf("patchd run ended before it started:\n%s", strings.Join(seen, "\n"))
	return nil
}

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

func busy(load string) bool {
	one, err := strconv.ParseFloat(strings.Fields(load + " x")[0], 64)
	return err != nil || one > 1
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
