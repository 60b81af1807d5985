package systemtest

import (
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/patchd/patchd/agent/agentlog"
)

// eventsOfKind reads patchd_agent_log_events_total{kind} from a scrape, -1
// when the series is absent.
func eventsOfKind(body, kind string) float64 {
	prefix := `patchd_agent_log_events_total{kind="` + kind + `"} `
	for _, l := range strings.Split(body, "\n") {
		if v, ok := strings.CutPrefix(l, prefix); ok {
			f, err := strconv.ParseFloat(strings.TrimSpace(v), 64)
			if err == nil {
				return f
			}
		}
	}
	return -1
}

// Scenario: the agent logs only to the journal. A unit prints agent-format
// lines to its stdout (journald stores each line as an entry); patchd with
// agent_log.source journal follows them through journalctl, and across a
// restart of patchd with lines printed while it was stopped counts each
// entry once: none lost, none repeated.
func TestAgentLogFromJournal(t *testing.T) {
	const unit = "agent-printer"
	h := newHost(t, "patchd-e2e-journal",
		"agent_log:\n  source: journal\n  journalctl: [journalctl, --unit="+unit+".service]\n")
	// print runs a unit that writes lines to its stdout as the agent does
	// under systemd, and waits for it to end.
	printLines := func(lines ...string) {
		t.Helper()
		args := []string{"systemd-run", "--unit=" + unit, "--wait", "--quiet", "-p", "SyslogIdentifier=amazon-ssm-agent",
			"/bin/sh", "-c", `printf '%s\n' "$@"`, "sh"}
		h.run(append(args, lines...)...)
	}
	cursor := filepath.Join(h.Dir, "var/lib/patchd", agentlog.CursorFile)
	h.waitFor(time.Minute, "patchd to record the journal's end in "+agentlog.CursorFile, func() bool {
		fi, err := os.Stat(cursor)
		return err == nil && fi.Size() > 0
	})
	kinds := func(stop, network float64) func() bool {
		return func() bool {
			body := scrape(t, defaultMetrics)
			return eventsOfKind(body, "agent_stop") == stop && eventsOfKind(body, "network_error") == network
		}
	}

	printLines(
		"2024-10-21 10:00:00 INFO [amazon-ssm-agent] amazon-ssm-agent got signal:terminated value: terminated",
		"2024-10-21 10:00:01 WARN [ssm-agent-worker] [MessageGatewayService] Failed to dial websocket: dial tcp 10.0.0.1:443: i/o timeout",
		"\tstatus code: 0, request id: 1",
	)
	h.waitFor(time.Minute, "one agent_stop and one network_error", kinds(1, 1))

	h.run("systemctl", "stop", "patchd.service")
	printLines(
		"2024-10-21 10:00:02 INFO [amazon-ssm-agent] Stopping Core Agent",
		"2024-10-21 10:00:03 INFO [amazon-ssm-agent] Bye.",
	)
	h.run("systemctl", "start", "patchd.service")
	waitActive(t, h.container, "patchd.service")
	// The counters start from zero with the process: after the restart
	// they hold what was printed while patchd was stopped, and only that.
	h.waitFor(time.Minute, "the two agent_stop printed while patchd was stopped, and nothing before", kinds(2, 0))
	if body := scrape(t, defaultMetrics); !strings.Contains(body, `patchd_agent_log_lines_total{file="journal",level="INFO"} 2`) {
		t.Errorf("lines after the restart: want 2 INFO lines under file=\"journal\":\n%s", grepLines(body, "patchd_agent_log_lines_total"))
	}
}

func grepLines(body, prefix string) string {
	var out []string
	for _, l := range strings.Split(body, "\n") {
		if strings.HasPrefix(l, prefix) {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}
