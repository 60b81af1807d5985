package agentlog

import (
	"bufio"
	"bytes"
	"os/exec"
	"strconv"
	"strings"
	"testing"
)

// TestInitIsCheap: the package builds its marker tables on the first
// scan, not at init, so that patchd's commands that never read a log start
// quickly. The runtime's own trace of a process that imports the package
// (tailcmd, run with -h) shows its init; allocations are the measure the
// test holds it to, since they do not vary with the machine's load (the
// tables were 848 allocations and 339 kB, 4.7 ms on a quiet machine).
func TestInitIsCheap(t *testing.T) {
	cmd := exec.Command(tailBin, "-h")
	cmd.Env = append(cmd.Environ(), "GODEBUG=inittrace=1")
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	_ = cmd.Run() // -h exits 2 after printing the usage
	sc := bufio.NewScanner(&stderr)
	for sc.Scan() {
		// init github.com/patchd/patchd/agent/agentlog @5.4 ms, 0.025 ms clock, 4536 bytes, 10 allocs
		f := strings.Fields(sc.Text())
		if len(f) < 10 || f[0] != "init" || f[1] != "github.com/patchd/patchd/agent/agentlog" {
			continue
		}
		clock, _ := strconv.ParseFloat(f[4], 64)
		size, err1 := strconv.Atoi(f[7])
		allocs, err2 := strconv.Atoi(f[9])
		if err1 != nil || err2 != nil {
			t.Fatalf("unexpected inittrace line %q", sc.Text())
		}
		t.Logf("agentlog init: %.3f ms, %d bytes, %d allocs", clock, size, allocs)
		if allocs > 64 || size > 32<<10 {
			t.Errorf("agentlog's package init allocates %d times, %d bytes: a table is built at init again (build it on first use)", allocs, size)
		}
		return
	}
	t.Fatalf("no inittrace line for agentlog in tailcmd's output:\n%s", stderr.String())
}
