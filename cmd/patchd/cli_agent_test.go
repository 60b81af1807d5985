package main

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// keeperIMDS is a minimal IMDSv2 (token PUT, token header checked) serving
// one identity that the test can replace.
type keeperIMDS struct {
	mu            sync.Mutex
	profile, role string
}

func (f *keeperIMDS) set(profile, role string) {
	f.mu.Lock()
	f.profile, f.role = profile, role
	f.mu.Unlock()
}

func (f *keeperIMDS) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	f.mu.Lock()
	profile, role := f.profile, f.role
	f.mu.Unlock()
	if r.Method == http.MethodPut && r.URL.Path == "/latest/api/token" {
		w.Header().Set("X-Aws-Ec2-Metadata-Token-Ttl-Seconds", r.Header.Get("X-Aws-Ec2-Metadata-Token-Ttl-Seconds"))
		fmt.Fprint(w, "the-token")
		return
	}
	if r.Header.Get("X-Aws-Ec2-Metadata-Token") != "the-token" {
		http.Error(w, "unauthorized", http.StatusUnauthorized)
		return
	}
	switch r.URL.Path {
	case "/latest/meta-data/iam/info":
		fmt.Fprintf(w, `{"Code":"Success","LastUpdated":%q,"InstanceProfileArn":%q,"InstanceProfileId":"AIPA%s"}`,
			time.Now().UTC().Format(time.RFC3339), profile, strings.ToUpper(role))
	case "/latest/meta-data/iam/security-credentials/":
		fmt.Fprintln(w, role)
	case "/latest/meta-data/iam/security-credentials/" + role:
		fmt.Fprint(w, `{"Code":"Success","Type":"AWS-HMAC","AccessKeyId":"AKIA","SecretAccessKey":"x","Token":"y"}`)
	default:
		http.NotFound(w, r)
	}
}

func agentStatusJSON(t *testing.T, tr testTree, extra ...string) agentStatus {
	t.Helper()
	code, out, errOut := runPatchd(t, append(append([]string{"agent", "status", "-o", "json"}, tr.flags()...), extra...)...)
	if code != 0 {
		t.Fatalf("patchd agent status: code %d\n%s%s", code, out, errOut)
	}
	var st agentStatus
	if err := json.Unmarshal([]byte(out), &st); err != nil {
		t.Fatalf("agent status JSON: %v\n%s", err, out)
	}
	return st
}

// The daemon end to end: a role change in IMDS restarts the agent through
// the configured command once; a manual restart goes through the same
// policy (deferred under a running document); status works with and
// without the daemon.
func TestAgentKeeperEndToEnd(t *testing.T) {
	tr := newTestTree(t)
	fake := &keeperIMDS{profile: "arn:aws:iam::123456789012:instance-profile/a", role: "role-a"}
	imdsSrv := httptest.NewServer(fake)
	defer imdsSrv.Close()
	restarts := filepath.Join(tr.Root, "restarts.log")
	addr := freePort(t)
	extra := []string{
		"--web.listen-address=" + addr,
		"--imds.endpoint=" + imdsSrv.URL,
		"--imds.poll-interval=1s",
		"--agent.service=command",
		"--agent.restart-command=echo restarted >> " + restarts,
		"--agent.restart-check-timeout=10s",
	}
	p := startDaemon(t, tr, extra...)
	eventually(t, 30*time.Second, "the first IMDS answer", func() bool {
		return agentStatusJSON(t, tr, extra...).IdentityKnown
	})
	st := agentStatusJSON(t, tr, extra...)
	if st.Source != "daemon" || st.Manager != "command" || st.Identity.Role != "role-a" || !st.ServesCredentials || st.LastRestart != nil {
		t.Fatalf("status = %+v, want the daemon's view: command manager, role-a, no restart", st)
	}
	if _, err := os.Stat(restarts); err == nil {
		t.Fatal("the agent was restarted at start (a baseline is not a change)")
	}

	fake.set("arn:aws:iam::123456789012:instance-profile/b", "role-b")
	eventually(t, 30*time.Second, "the restart after the role change", func() bool {
		b, _ := os.ReadFile(restarts)
		return strings.Count(string(b), "restarted") == 1
	})
	st = agentStatusJSON(t, tr, extra...)
	if st.LastRestart == nil || st.LastRestart.Reason != "role_changed" || !strings.Contains(st.LastRestart.Detail, "role-b") {
		t.Fatalf("last restart = %+v, want role_changed to role-b", st.LastRestart)
	}
	body := httpGet(t, http.DefaultClient, "http://"+addr+"/metrics", http.StatusOK)
	for _, want := range []string{
		`patchd_agent_restarts_total{reason="role_changed"} 1`,
		`patchd_role_changes_total 1`,
		`patchd_role_info{instance_profile="arn:aws:iam::123456789012:instance-profile/b",role="role-b"} 1`,
		`patchd_agent_up 1`,
		`patchd_imds_errors_total{kind="timeout"} 0`,
	} {
		if !strings.Contains(body, want) {
			t.Errorf("/metrics lacks %q", want)
		}
	}
	// Lint only the keeper's families: other areas' metrics have their own tests.
	var mine []string
	for _, l := range strings.Split(body, "\n") {
		for _, prefix := range []string{"patchd_agent_", "patchd_role_", "patchd_imds_"} {
			if strings.HasPrefix(strings.TrimPrefix(strings.TrimPrefix(l, "# HELP "), "# TYPE "), prefix) {
				mine = append(mine, l)
			}
		}
	}
	if len(mine) < 20 {
		t.Fatalf("only %d keeper metric lines in /metrics:\n%s", len(mine), strings.Join(mine, "\n"))
	}
	promtoolCheck(t, strings.Join(mine, "\n")+"\n")

	code, out, errOut := runPatchd(t, append([]string{"agent", "restart", "--detail=e2e"}, tr.flags()...)...)
	if code != 0 || !strings.HasPrefix(out, "restarted:") {
		t.Fatalf("patchd agent restart: code %d\n%s%s", code, out, errOut)
	}
	doc := filepath.Join(tr.AgentData, "i-0123456789abcdef0", "document", "state", "current", "2b1f3c4d-aaaa-bbbb-cccc-000000000001")
	if err := os.MkdirAll(filepath.Dir(doc), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(doc, []byte("{}"), 0o600); err != nil {
		t.Fatal(err)
	}
	code, out, errOut = runPatchd(t, append([]string{"agent", "restart"}, tr.flags()...)...)
	if code != 0 || !strings.HasPrefix(out, "deferred:") || !strings.Contains(out, "2b1f3c4d") {
		t.Fatalf("patchd agent restart with a running document: code %d\n%s%s", code, out, errOut)
	}
	if b, _ := os.ReadFile(restarts); strings.Count(string(b), "restarted") != 2 {
		t.Fatalf("restart command ran %d times, want 2 (the deferred one waits)", strings.Count(string(b), "restarted"))
	}

	if _, err := p.stop(t, syscall.SIGTERM, 15*time.Second); err != nil {
		t.Fatalf("patchd exited with %v", err)
	}
	// Without the daemon: from keeper.json and role.json.
	code, out, errOut = runPatchd(t, append(append([]string{"agent", "status"}, tr.flags()...), extra...)...)
	if code != 0 {
		t.Fatalf("patchd agent status without the daemon: code %d\n%s%s", code, out, errOut)
	}
	for _, want := range []string{
		"service manager:   command (active)",
		"instance profile:  arn:aws:iam::123456789012:instance-profile/b",
		"role:              role-b",
		"manual (ok) e2e",
		"pending restart:   manual since",
		"deferred while documents are in current/",
		"patchd is not running",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("status without the daemon lacks %q:\n%s", want, out)
		}
	}
}

// The agent's credential errors, read by the log tail, restart the agent
// once per episode while IMDS serves credentials.
func TestAgentKeeperCredentialsStuckFromLog(t *testing.T) {
	tr := newTestTree(t)
	fake := &keeperIMDS{profile: "arn:aws:iam::123456789012:instance-profile/a", role: "role-a"}
	imdsSrv := httptest.NewServer(fake)
	defer imdsSrv.Close()
	restarts := filepath.Join(tr.Root, "restarts.log")
	if err := os.MkdirAll(tr.AgentLogs, 0o755); err != nil {
		t.Fatal(err)
	}
	logPath := filepath.Join(tr.AgentLogs, "amazon-ssm-agent.log")
	if err := os.WriteFile(logPath, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	extra := []string{
		"--web.listen-address=",
		"--imds.endpoint=" + imdsSrv.URL,
		"--agent.service=command",
		"--agent.restart-command=echo restarted >> " + restarts,
	}
	startDaemon(t, tr, extra...)
	eventually(t, 30*time.Second, "the first IMDS answer", func() bool {
		return agentStatusJSON(t, tr, extra...).IdentityKnown
	})
	appendLog := func(lines ...string) {
		t.Helper()
		f, err := os.OpenFile(logPath, os.O_APPEND|os.O_WRONLY, 0)
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close()
		for _, l := range lines {
			fmt.Fprintf(f, "%s %s\n", time.Now().UTC().Format("2006-01-02 15:04:05.0000"), l)
		}
	}
	restartCount := func() int {
		b, _ := os.ReadFile(restarts)
		return strings.Count(string(b), "restarted")
	}
	appendLog(
		"ERROR [ssm-agent-worker] [MessageService] Retrieve credentials produced error: EC2RoleRequestError: no EC2 instance role found",
		"INFO [ssm-agent-worker] [CredentialRefresher] Sleeping for 27m13s before retrying retrieve credentials",
	)
	eventually(t, 30*time.Second, "the stuck-credentials restart", func() bool { return restartCount() == 1 })
	st := agentStatusJSON(t, tr, extra...)
	if st.LastRestart == nil || st.LastRestart.Reason != "credentials_stuck" {
		t.Fatalf("last restart = %+v, want credentials_stuck", st.LastRestart)
	}
	// More errors of the same episode: no second restart. (The "Sleeping"
	// line may reach the keeper after the restart it was logged before;
	// such a line predates the restart and is not counted, so the episode
	// has one or two lines now.)
	var before int
	eventually(t, 30*time.Second, "the episode's first lines counted", func() bool {
		e := agentStatusJSON(t, tr, extra...).CredentialsEpisode
		if e != nil {
			before = e.Lines
		}
		return e != nil && e.Lines >= 1
	})
	appendLog("ERROR [ssm-agent-worker] [MessageService] Retrieve credentials produced error: AccessDeniedException: not authorized")
	eventually(t, 30*time.Second, "the keeper to count the new error line", func() bool {
		e := agentStatusJSON(t, tr, extra...).CredentialsEpisode
		return e != nil && e.Lines > before
	})
	if n := restartCount(); n != 1 {
		t.Fatalf("%d restarts, want 1 per episode", n)
	}
	appendLog("INFO [ssm-agent-worker] [CredentialRefresher] Successfully connected with instance profile role credentials")
	eventually(t, 30*time.Second, "the episode to end", func() bool {
		return agentStatusJSON(t, tr, extra...).CredentialsEpisode == nil
	})
}

// agent.restart: false only watches and logs "would restart"; a reload that
// turns it on applies at once.
func TestAgentRestartOffAndReload(t *testing.T) {
	tr := newTestTree(t)
	fake := &keeperIMDS{profile: "arn:aws:iam::123456789012:instance-profile/a", role: "role-a"}
	imdsSrv := httptest.NewServer(fake)
	defer imdsSrv.Close()
	restarts := filepath.Join(tr.Root, "restarts.log")
	conf := func(restart bool) {
		t.Helper()
		yaml := fmt.Sprintf("agent:\n  restart: %v\n  service: command\n  restart_command: echo restarted >> %s\nimds:\n  endpoint: %s\n  poll_interval: 1s\nweb:\n  listen_address: \"\"\n",
			restart, restarts, imdsSrv.URL)
		if err := os.WriteFile(tr.Config, []byte(yaml), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	conf(false)
	p := startDaemon(t, tr)
	eventually(t, 30*time.Second, "the first IMDS answer", func() bool { return agentStatusJSON(t, tr).IdentityKnown })
	fake.set("arn:aws:iam::123456789012:instance-profile/b", "role-b")
	eventually(t, 30*time.Second, "the would-restart log line", func() bool {
		return strings.Contains(p.stderr.String(), "would restart amazon-ssm-agent, but agent.restart is off")
	})
	code, out, _ := runPatchd(t, append([]string{"agent", "restart"}, tr.flags()...)...)
	if code != 0 || !strings.HasPrefix(out, "would_restart:") {
		t.Fatalf("patchd agent restart with restarts off: code %d, %s", code, out)
	}
	if _, err := os.Stat(restarts); err == nil {
		t.Fatal("the restart command ran although agent.restart is false")
	}
	if st := agentStatusJSON(t, tr); st.RestartEnabled || st.LastRestart != nil || st.Pending != nil {
		t.Fatalf("status = %+v, want restarts off and nothing recorded or pending", st)
	}

	conf(true)
	if err := p.cmd.Process.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	eventually(t, 30*time.Second, "the reload", func() bool { return agentStatusJSON(t, tr).RestartEnabled })
	code, out, errOut := runPatchd(t, append([]string{"agent", "restart"}, tr.flags()...)...)
	if code != 0 || !strings.HasPrefix(out, "restarted:") {
		t.Fatalf("patchd agent restart after the reload: code %d\n%s%s", code, out, errOut)
	}
	if b, _ := os.ReadFile(restarts); strings.Count(string(b), "restarted") != 1 {
		t.Fatalf("restart command ran %d times, want 1", strings.Count(string(b), "restarted"))
	}
}
