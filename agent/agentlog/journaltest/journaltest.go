// Package journaltest makes systemd journal files for tests without a
// journald: systemd-journal-remote (Debian package systemd-journal-remote)
// turns journal export format into a journal file in a temp dir, which the
// real journalctl reads with --directory.
package journaltest

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// Remote is systemd-journal-remote's path on Debian.
const Remote = "/lib/systemd/systemd-journal-remote"

// Journal is a journal directory a test appends to as the agent's unit
// would.
type Journal struct {
	t    testing.TB
	Dir  string
	seq  int
	base time.Time
}

// New returns an empty journal directory, or skips the test when
// journalctl or systemd-journal-remote is missing.
func New(t testing.TB) *Journal {
	t.Helper()
	for _, p := range []string{Remote, "journalctl"} {
		if _, err := exec.LookPath(p); err != nil {
			t.Skipf("%s not found (%v): install systemd-journal-remote and systemd", p, err)
		}
	}
	return &Journal{t: t, Dir: t.TempDir(), base: time.Now().Add(-time.Hour)}
}

// Line is one journal entry: a line a program logged.
type Line struct {
	Ident, Msg string
}

// Agent is a line amazon-ssm-agent printed to its stdout under systemd.
func Agent(msg string) Line { return Line{"amazon-ssm-agent", msg} }

// Systemd is a line systemd logged about the agent's unit.
func Systemd(msg string) Line { return Line{"systemd", msg} }

// Write appends the lines, one journal entry each, in one run of
// systemd-journal-remote.
func (j *Journal) Write(lines ...Line) {
	j.t.Helper()
	var b strings.Builder
	for _, l := range lines {
		j.seq++
		ts := j.base.Add(time.Duration(j.seq) * time.Millisecond)
		fmt.Fprintf(&b, "__REALTIME_TIMESTAMP=%d\n__MONOTONIC_TIMESTAMP=%d\n_BOOT_ID=0123456789abcdef0123456789abcdef\n",
			ts.UnixMicro(), 1000+j.seq)
		fmt.Fprintf(&b, "MESSAGE=%s\nSYSLOG_IDENTIFIER=%s\nPRIORITY=6\n", l.Msg, l.Ident)
		if l.Ident == "systemd" {
			b.WriteString("_PID=1\n_SYSTEMD_UNIT=init.scope\nUNIT=amazon-ssm-agent.service\n\n")
		} else {
			b.WriteString("_PID=4242\n_SYSTEMD_UNIT=amazon-ssm-agent.service\n\n")
		}
	}
	in := filepath.Join(j.t.TempDir(), "in.export")
	if err := os.WriteFile(in, []byte(b.String()), 0o644); err != nil {
		j.t.Fatal(err)
	}
	out, err := exec.Command(Remote, "--output="+filepath.Join(j.Dir, "agent.journal"), in).CombinedOutput()
	if err != nil {
		j.t.Fatalf("%s: %v\n%s", Remote, err, out)
	}
}

// Journalctl is journalctl reading only this journal, with the agent's unit.
func (j *Journal) Journalctl() []string {
	return []string{"journalctl", "--directory=" + j.Dir, "--unit=amazon-ssm-agent.service"}
}
