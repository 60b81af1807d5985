package main

import (
	"context"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/patchd/patchd/agent/agentlog"
	"github.com/patchd/patchd/agent/agentlog/journaltest"
)

// eventCount reads patchd_agent_log_events_total{kind} from /metrics.
func eventCount(t *testing.T, addr, kind string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+addr+"/metrics", nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return "unreachable: " + err.Error()
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	prefix := `patchd_agent_log_events_total{kind="` + kind + `"} `
	for _, l := range strings.Split(string(body), "\n") {
		if v, ok := strings.CutPrefix(l, prefix); ok {
			return v
		}
	}
	return "absent"
}

// TestDaemonFollowsJournalAcrossRestart: with agent_log.source journal,
// patchd run follows the agent's entries in a real journal (journalctl
// over journal files in a temp dir) and counts them; entries written while
// it is stopped are counted after its restart, and none twice.
func TestDaemonFollowsJournalAcrossRestart(t *testing.T) {
	j := journaltest.New(t)
	j.Write(journaltest.Agent("2024-10-21 09:00:00 INFO [amazon-ssm-agent] Stopping Core Agent")) // history
	tr := newTestTree(t)
	addr := freePort(t)
	flags := []string{"--web.listen-address=" + addr, "--agent-log.source=journal",
		"--agent-log.journalctl=" + strings.Join(j.Journalctl(), ",")}
	p := startDaemon(t, tr, flags...)
	stopped := func(want string) func() bool {
		return func() bool { return eventCount(t, addr, "agent_stop") == want }
	}
	// The first start begins at the journal's end: once it has, a new
	// entry is counted and the history is not.
	eventually(t, 30*time.Second, "the journal cursor file", func() bool {
		fi, err := os.Stat(filepath.Join(tr.State, agentlog.CursorFile))
		return err == nil && fi.Size() > 0
	})
	j.Write(
		journaltest.Agent("2024-10-21 10:00:00 INFO [amazon-ssm-agent] amazon-ssm-agent got signal:terminated value: terminated"),
		journaltest.Agent("2024-10-21 10:00:01 ERROR [amazon-ssm-agent] [CredentialRefresher] Retrieve credentials produced error: AccessDeniedException: denied"),
		journaltest.Agent("\tstatus code: 400, request id: 1"),
		journaltest.Systemd("Stopped amazon-ssm-agent.service - amazon-ssm-agent."),
	)
	eventually(t, 30*time.Second, "two agent_stop events", stopped("2"))
	eventually(t, 30*time.Second, "one credentials_error event", func() bool { return eventCount(t, addr, "credentials_error") == "1" })
	if _, err := p.stop(t, syscall.SIGTERM, 30*time.Second); err != nil {
		t.Fatalf("patchd exit: %v", err)
	}

	j.Write(
		journaltest.Agent("2024-10-21 10:00:02 INFO [amazon-ssm-agent] Bye."),
		journaltest.Systemd("Started amazon-ssm-agent.service - amazon-ssm-agent."),
	)
	startDaemon(t, tr, flags...)
	// Counters start from zero with the process: after the restart they
	// hold exactly what came while it was down.
	eventually(t, 30*time.Second, "the agent_start written while patchd was down", func() bool {
		return eventCount(t, addr, "agent_start") == "1"
	})
	if got := eventCount(t, addr, "agent_stop"); got != "1" {
		t.Errorf("agent_stop after the restart = %s, want 1 (the Bye. written while down, nothing repeated)", got)
	}
	if got := eventCount(t, addr, "credentials_error"); got != "0" {
		t.Errorf("credentials_error after the restart = %s, want 0 (handed out before the stop)", got)
	}
}

// TestClassifyJournalctlOutput: `journalctl -u amazon-ssm-agent` output
// (the real journalctl's default short format) piped into `patchd
// agent-log classify` gives the agent's levels and kinds, continuation
// lines with their entry.
func TestClassifyJournalctlOutput(t *testing.T) {
	j := journaltest.New(t)
	j.Write(
		journaltest.Systemd("Started amazon-ssm-agent.service - amazon-ssm-agent."),
		journaltest.Agent("2024-10-21 10:00:00 INFO [amazon-ssm-agent] amazon-ssm-agent - v3.3.1142.0"),
		journaltest.Agent("2024-10-21 10:00:01 ERROR [amazon-ssm-agent] [CredentialRefresher] Retrieve credentials produced error: EC2RoleRequestError: no EC2 instance role found"),
		journaltest.Agent("caused by: RequestError: send request failed"),
		journaltest.Agent("2024-10-21 10:00:02 WARN [amazon-ssm-agent] [EC2RoleProvider] Failed to connect to Systems Manager with SSM role credentials. x"),
		journaltest.Agent("\tstatus code: 400, request id: 1"),
	)
	for _, format := range []string{"short", "short-iso", "short-precise", "short-iso-precise", "short-full", "short-monotonic", "short-unix", "with-unit"} {
		args := append(j.Journalctl()[1:], "--no-pager", "--output="+format)
		out, err := exec.Command("journalctl", args...).Output()
		if err != nil {
			t.Fatalf("journalctl: %v", err)
		}
		cmd := exec.Command(patchdBin, "agent-log", "classify")
		cmd.Stdin = strings.NewReader(string(out))
		got, err := cmd.Output()
		if err != nil {
			t.Fatalf("classify: %v", err)
		}
		want := "1\t-\tagent_start\n2\tINFO\tagent_start\n3\tERROR\tnetwork_error\n4\t-\tnetwork_error\n5\tWARN\tcredentials_error\n6\t-\tcredentials_error\n"
		if string(got) != want {
			t.Errorf("journalctl -o %s:\n%s\nclassified:\n%s\nwant:\n%s", format, out, got, want)
		}
	}
}
