package agentlog

import (
	"fmt"
	"os"
	"strings"
	"testing"
)

// prefixForms are the ways an agent line reaches a reader with something
// before it. Each maps the n-th physical line (1-based) of a log to the
// same line as that form shows it.
var prefixForms = map[string]func(n int, line string) string{
	"journald short": func(_ int, l string) string {
		return "Oct 21 10:00:00 ip-10-0-0-1 amazon-ssm-agent[1234]: " + l
	},
	"journald short-precise": func(_ int, l string) string {
		return "Oct 21 10:00:00.123456 ip-10-0-0-1 amazon-ssm-agent[1234]: " + l
	},
	"journald short without a host": func(_ int, l string) string {
		return "Oct  1 10:00:00 amazon-ssm-agent[1234]: " + l
	},
	"journald short-full": func(_ int, l string) string {
		return "Mon 2024-10-21 10:00:00 UTC ip-10-0-0-1 amazon-ssm-agent[1234]: " + l
	},
	"journald with-unit": func(_ int, l string) string {
		return "Mon 2024-10-21 10:00:00.123456 UTC ip-10-0-0-1 amazon-ssm-agent.service[1234]: " + l
	},
	"journald short-monotonic": func(_ int, l string) string {
		return "[ 1234.567890] ip-10-0-0-1 amazon-ssm-agent[1234]: " + l
	},
	"journald short-unix": func(_ int, l string) string {
		return "1729504800.123456 ip-10-0-0-1 amazon-ssm-agent[1234]: " + l
	},
	"journald short-iso": func(_ int, l string) string {
		return "2024-10-21T10:00:00+0000 ip-10-0-0-1 amazon-ssm-agent[1234]: " + l
	},
	"rsyslog RFC 3339": func(_ int, l string) string {
		return "2024-10-21T10:00:00.123456+00:00 ip-10-0-0-1 amazon-ssm-agent[1234]: " + l
	},
	"syslog tag only": func(_ int, l string) string {
		return "amazon-ssm-agent[1234]: " + l
	},
	"snap journal": func(_ int, l string) string {
		return "2024-10-21T10:00:00.123456+00:00 amazon-ssm-agent.amazon-ssm-agent[1234]: " + l
	},
	"grep -rn": func(n int, l string) string {
		return fmt.Sprintf("/var/log/amazon/ssm/amazon-ssm-agent.log:%d:%s", n, l)
	},
	"grep -r": func(_ int, l string) string {
		return "/var/log/amazon/ssm/amazon-ssm-agent.log:" + l
	},
	// grep -C: matching lines with ':', context lines with '-'; a file
	// name with dashes and digits of its own (dateext rotation).
	"grep -C": func(n int, l string) string {
		sep := "-"
		if n%3 == 0 {
			sep = ":"
		}
		return fmt.Sprintf("/var/log/amazon/ssm/amazon-ssm-agent.log-20241021%s%d%s%s", sep, n, sep, l)
	},
	"cut timestamp": func(_ int, l string) string {
		if _, n, ok := parseStamp([]byte(l), nil); ok {
			return " " + l[n:]
		}
		return l
	},
}

// TestPrefixForms: every line of the multi-line sample logs has the same
// level and kind in every prefix form as bare, so continuation lines stay
// with the entry they continue.
func TestPrefixForms(t *testing.T) {
	for _, path := range []string{"testdata/source/agent-source-lines.log", "testdata/source/errors.log",
		"testdata/ssm-real/v3.0.161.0_ubuntu-snap_hibernate-accessdenied__vumdao-ssm-agent.log",
		"testdata/ssm-real/windows_2020_console-hibernate-ec2rolerequesterror__strontic.log"} {
		data, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		lines := strings.Split(strings.TrimSuffix(string(data), "\n"), "\n")
		bare := classifyLines(data)
		multi := 0
		for _, row := range bare {
			if strings.HasPrefix(row, "-\t") {
				multi++
			}
		}
		if multi == 0 {
			t.Fatalf("%s has no continuation lines: the test would not see them go astray", path)
		}
		for name, form := range prefixForms {
			var b strings.Builder
			for i, l := range lines {
				b.WriteString(form(i+1, l))
				b.WriteByte('\n')
			}
			got := classifyLines([]byte(b.String()))
			if len(got) != len(bare) {
				t.Fatalf("%s, %s: %d lines, want %d", path, name, len(got), len(bare))
			}
			for i := range bare {
				want := bare[i]
				if got[i] != want {
					t.Errorf("%s, %s, line %d %q: got %q, bare %q", path, name, i+1, form(i+1, lines[i]), got[i], bare[i])
				}
			}
		}
	}
}

// TestPrefixSeparators: the lines tools put between entries belong to
// none: grep's "--", journalctl's "-- Boot ... --" and tail's "==> f <=="
// do not continue the entry before them, and a continuation line after
// them is a tail of their kind, other.
func TestPrefixSeparators(t *testing.T) {
	in := "-- Logs begin at Mon 2024-10-21 09:00:00 UTC. --\n" +
		"Oct 21 10:00:00 h amazon-ssm-agent[1]: 2024-10-21 10:00:00 ERROR [x] Retrieve credentials produced error: EC2RoleRequestError\n" +
		"Oct 21 10:00:00 h amazon-ssm-agent[1]: caused by: RequestError: send request failed\n" +
		"-- Boot 0123456789abcdef --\n" +
		"/var/log/amazon/ssm/amazon-ssm-agent.log:4:2024-10-21 10:00:01 INFO [x] Bye.\n" +
		"--\n" +
		"Oct 21 10:00:02 h systemd[1]: Started amazon-ssm-agent.service.\n" +
		"2024-10-21 10:00:03 ERROR [x] Failed to dial websocket: x\n" +
		"\n" +
		"==> /var/log/amazon/ssm/errors.log <==\n" +
		"\tstatus code: 400, request id: 1\n"
	want := []string{"-\tother", "ERROR\tnetwork_error", "-\tnetwork_error", "-\tother", "INFO\tagent_stop", "-\tother", "-\tagent_start",
		"ERROR\tnetwork_error", "-\tnetwork_error", "-\tother", "-\tother"}
	got := classifyLines([]byte(in))
	if strings.Join(got, "|") != strings.Join(want, "|") {
		t.Errorf("got\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}

// TestOwnLinesWithoutLevel: a process's first or last words pasted without
// their time and level still begin an entry of their kind instead of
// continuing the entry before.
func TestOwnLinesWithoutLevel(t *testing.T) {
	in := "2024-10-21 10:00:00 ERROR [x] Failed to dial websocket: x\n" +
		"amazon-ssm-agent got signal:terminated value:0x7f292bd0ce20\n" +
		"Stopping Core Agent\n" +
		"caused by: Bye.\n"
	want := []string{"ERROR\tnetwork_error", "-\tagent_stop", "-\tagent_stop", "-\tagent_stop"}
	got := classifyLines([]byte(in))
	if strings.Join(got, "|") != strings.Join(want, "|") {
		t.Errorf("got\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}
