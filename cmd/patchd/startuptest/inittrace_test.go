// Package startuptest checks what starting the release binaries costs: no
// package may do at init work that a command does not need, because every
// command (patchd version, patchd hooks run, patchd status) pays for every
// linked package's init, whatever it uses. The CLI (patchd) links few; the
// full binary (patchd-daemon, which the CLI runs for the daemon's commands)
// links them all.
package startuptest

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"testing"
)

// maxInit is the most one package's initialisation may take. A table that
// takes longer to build is built on first use instead (sync.OnceValue).
const maxInit = 1.0 // ms

// initRuns is how often the binary is started; each package is judged by
// its fastest init over the runs, so that a busy machine (which only ever
// adds time) does not make the test fail, while a package whose init
// really costs more than maxInit fails on any machine.
const initRuns = 11

// buildRelease builds patchd the way `make build` does (static, trimmed,
// stripped: the race detector and cgo change what init costs): the CLI
// (-tags patchd_cli) as patchd, which it returns, and the full binary
// beside it as patchd-daemon, which runs the daemon's commands.
func buildRelease(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	for _, b := range []struct{ name, tags string }{{"patchd", "patchd_cli"}, {"patchd-daemon", ""}} {
		build := exec.Command("go", "build", "-trimpath", "-tags="+b.tags, "-ldflags=-s -w", "-o", filepath.Join(dir, b.name), "github.com/patchd/patchd/cmd/patchd")
		build.Env = append(os.Environ(), "CGO_ENABLED=0")
		if out, err := build.CombinedOutput(); err != nil {
			t.Fatalf("go build %s: %v\n%s", b.name, err, out)
		}
	}
	return filepath.Join(dir, "patchd")
}

// initLine is one line of GODEBUG=inittrace=1:
// "init net/http @1.2 ms, 0.041 ms clock, 4712 bytes, 49 allocs".
var initLine = regexp.MustCompile(`^init (\S+) @[0-9.]+ ms, ([0-9.]+) ms clock, (\d+) bytes, (\d+) allocs$`)

// initTimes runs args under GODEBUG=inittrace=1 and returns each package's
// init clock time in ms.
func initTimes(t *testing.T, bin string, args ...string) map[string]float64 {
	t.Helper()
	cmd := exec.Command(bin, args...)
	cmd.Env = append(os.Environ(), "GODEBUG=inittrace=1")
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("%s %s: %v\n%s", bin, strings.Join(args, " "), err, stderr.String())
	}
	times := map[string]float64{}
	sc := bufio.NewScanner(&stderr)
	for sc.Scan() {
		m := initLine.FindStringSubmatch(sc.Text())
		if m == nil {
			continue
		}
		ms, err := strconv.ParseFloat(m[2], 64)
		if err != nil {
			t.Fatalf("inittrace line %q: %v", sc.Text(), err)
		}
		times[m[1]] += ms
	}
	if len(times) < 20 {
		t.Fatalf("only %d packages in the init trace of %s; stderr:\n%s", len(times), args, stderr.String())
	}
	return times
}

func TestNoPackageInitAboveOneMillisecond(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the release binary")
	}
	cli := buildRelease(t)
	// The CLI is what operators type; the full binary starts the daemon
	// and every command the CLI hands it, so its packages count too.
	for _, bin := range []string{cli, filepath.Join(filepath.Dir(cli), "patchd-daemon")} {
		t.Run(filepath.Base(bin), func(t *testing.T) { checkInits(t, bin) })
	}
}

func checkInits(t *testing.T, bin string) {
	runs := map[string][]float64{}
	for range initRuns {
		for pkg, ms := range initTimes(t, bin, "version") {
			runs[pkg] = append(runs[pkg], ms)
		}
	}
	type cost struct {
		pkg         string
		min, median float64
	}
	var costs []cost
	for pkg, ms := range runs {
		slices.Sort(ms)
		costs = append(costs, cost{pkg, ms[0], ms[len(ms)/2]})
	}
	sort.Slice(costs, func(i, j int) bool { return costs[i].min > costs[j].min })
	var top []string
	for _, c := range costs[:min(5, len(costs))] {
		top = append(top, fmt.Sprintf("%s %.3f ms (median %.3f)", c.pkg, c.min, c.median))
	}
	t.Logf("slowest package inits, fastest of %d runs: %s", initRuns, strings.Join(top, "; "))
	for _, c := range costs {
		if c.min > maxInit {
			t.Errorf("package %s takes %.2f ms to initialise (fastest of %d starts of %s version; median %.2f ms), above %.0f ms: build its tables on first use (sync.OnceValue), not in var initialisers or init()",
				c.pkg, c.min, initRuns, filepath.Base(bin), c.median, maxInit)
		}
	}
}
