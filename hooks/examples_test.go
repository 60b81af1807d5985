package hooks

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
)

// The example hooks of packaging/examples run here against the most real
// counterparts available: real curl against an HTTP server that keeps
// Alertmanager's v2 silence API, and recording stand-ins for systemctl and
// the AWS CLI. Each is run twice in a row to prove it idempotent.

const examples = "../packaging/examples/hooks.d"

type exampleEnv struct {
	dir, fake string
	env       []string
}

func newExampleEnv(t *testing.T, settings string) exampleEnv {
	t.Helper()
	dir := t.TempDir()
	fake := filepath.Join(dir, "bin")
	if err := os.Mkdir(fake, 0o755); err != nil {
		t.Fatal(err)
	}
	// systemctl: is-active/start/stop on a state file, each call logged.
	writeHook(t, filepath.Join(fake, "systemctl"), `#!/bin/sh
echo "systemctl $*" >> "$FAKE_DIR/calls"
case $1 in
is-active) [ -e "$FAKE_DIR/active-$3" ] ;;
start) touch "$FAKE_DIR/active-$2" ;;
stop) rm -f "$FAKE_DIR/active-$2" ;;
esac
`, 0o755)
	// aws: elbv2 target health kept in a file, each call logged.
	writeHook(t, filepath.Join(fake, "aws"), `#!/bin/sh
echo "aws $*" >> "$FAKE_DIR/calls"
case "$*" in
*describe-target-health*) cat "$FAKE_DIR/alb-state" ;;
*deregister-targets*) echo unused > "$FAKE_DIR/alb-state" ;;
*register-targets*) echo healthy > "$FAKE_DIR/alb-state" ;;
esac
`, 0o755)
	envFile := filepath.Join(dir, "hooks.env")
	settings += "\nHOOK_STATE_DIR=" + filepath.Join(dir, "state") + "\n"
	if err := os.WriteFile(envFile, []byte(settings), 0o644); err != nil {
		t.Fatal(err)
	}
	return exampleEnv{dir: dir, fake: fake, env: []string{
		"PATH=" + fake + ":" + DefaultPath,
		"PATCHD_HOOKS_ENV=" + envFile,
		"PATCHD_INSTANCE_ID=i-0123456789abcdef0",
		"PATCHD_REGION=eu-west-1",
		"PATCHD_CYCLE_ID=c-1",
		"FAKE_DIR=" + dir,
	}}
}

func (e exampleEnv) run(t *testing.T, hook string) string {
	t.Helper()
	cmd := exec.Command(filepath.Join(examples, hook))
	cmd.Env = e.env
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("%s: %v\n%s", hook, err, out)
	}
	return string(out)
}

func (e exampleEnv) calls(t *testing.T) []string {
	t.Helper()
	data, _ := os.ReadFile(filepath.Join(e.dir, "calls"))
	os.Remove(filepath.Join(e.dir, "calls"))
	return strings.Split(strings.TrimSpace(string(data)), "\n")
}

// alertmanager keeps silences like Alertmanager's /api/v2.
type alertmanager struct {
	mu       sync.Mutex
	silences map[string]string // id -> state
	posts    []map[string]any
	deletes  int
}

func (a *alertmanager) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	a.mu.Lock()
	defer a.mu.Unlock()
	switch {
	case r.Method == http.MethodPost && r.URL.Path == "/api/v2/silences":
		var body map[string]any
		data, _ := io.ReadAll(r.Body)
		if err := json.Unmarshal(data, &body); err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		a.posts = append(a.posts, body)
		id := fmt.Sprintf("silence-%d", len(a.posts))
		a.silences[id] = "active"
		fmt.Fprintf(w, `{"silenceID":%q}`, id)
	case strings.HasPrefix(r.URL.Path, "/api/v2/silence/"):
		id := strings.TrimPrefix(r.URL.Path, "/api/v2/silence/")
		st, ok := a.silences[id]
		switch {
		case !ok:
			http.NotFound(w, r)
		case r.Method == http.MethodGet:
			fmt.Fprintf(w, `{"id":%q,"status":{"state":%q}}`, id, st)
		case r.Method == http.MethodDelete && st == "expired":
			http.Error(w, "silence "+id+" already expired", http.StatusInternalServerError)
		case r.Method == http.MethodDelete:
			a.deletes++
			a.silences[id] = "expired"
		}
	default:
		http.NotFound(w, r)
	}
}

func TestExampleAlertmanagerSilence(t *testing.T) {
	if _, err := exec.LookPath("curl"); err != nil {
		t.Skip("curl is not installed")
	}
	am := &alertmanager{silences: map[string]string{}}
	srv := httptest.NewServer(am)
	defer srv.Close()
	e := newExampleEnv(t, "ALERTMANAGER_URL="+srv.URL)

	e.run(t, "pre-patch/10-alertmanager-silence")
	if out := e.run(t, "pre-patch/10-alertmanager-silence"); !strings.Contains(out, "already active") {
		t.Errorf("second silence run: %q", out)
	}
	am.mu.Lock()
	posts := am.posts
	am.mu.Unlock()
	if len(posts) != 1 {
		t.Fatalf("%d silences created, want 1", len(posts))
	}
	m := posts[0]["matchers"].([]any)[0].(map[string]any)
	if m["name"] != "instance_id" || m["value"] != "i-0123456789abcdef0" || m["isRegex"] != false {
		t.Errorf("matcher %v", m)
	}
	e.run(t, "post-patch/90-alertmanager-expire")
	e.run(t, "post-patch/90-alertmanager-expire")
	am.mu.Lock()
	deletes, state := am.deletes, am.silences["silence-1"]
	am.mu.Unlock()
	if deletes != 1 || state != "expired" {
		t.Errorf("deletes %d, state %q; want 1 and expired", deletes, state)
	}
	// A silence that expired on its own is fine to expire again.
	e.run(t, "pre-patch/10-alertmanager-silence")
	am.mu.Lock()
	am.silences["silence-2"] = "expired"
	am.mu.Unlock()
	if out := e.run(t, "post-patch/90-alertmanager-expire"); !strings.Contains(out, "already expired") {
		t.Errorf("expire of an expired silence: %q", out)
	}
}

func TestExampleMonitoringAgent(t *testing.T) {
	e := newExampleEnv(t, "MONITORING_SERVICE=node-agent")
	// Running before patching: stopped once, started once.
	if err := os.WriteFile(filepath.Join(e.dir, "active-node-agent"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	e.run(t, "pre-patch/20-monitoring-agent-stop")
	e.run(t, "pre-patch/20-monitoring-agent-stop")
	e.run(t, "post-patch/80-monitoring-agent-start")
	e.run(t, "post-patch/80-monitoring-agent-start")
	want := "systemctl is-active --quiet node-agent|systemctl stop node-agent|systemctl is-active --quiet node-agent|systemctl start node-agent"
	if got := strings.Join(e.calls(t), "|"); got != want {
		t.Errorf("calls\n got %s\nwant %s", got, want)
	}
	// Stopped by the operator before patching: left stopped.
	if err := os.Remove(filepath.Join(e.dir, "active-node-agent")); err != nil {
		t.Fatal(err)
	}
	e.run(t, "pre-patch/20-monitoring-agent-stop")
	e.run(t, "post-patch/80-monitoring-agent-start")
	if got := strings.Join(e.calls(t), "|"); got != "systemctl is-active --quiet node-agent" {
		t.Errorf("a service stopped before patching was touched: %s", got)
	}
}

func TestExampleALB(t *testing.T) {
	arn := "arn:aws:elasticloadbalancing:eu-west-1:123456789012:targetgroup/web/0123456789abcdef"
	e := newExampleEnv(t, "TARGET_GROUP_ARN="+arn+"\nTARGET_PORT=8080")
	if err := os.WriteFile(filepath.Join(e.dir, "alb-state"), []byte("healthy\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	e.run(t, "pre-patch/30-alb-deregister")
	e.run(t, "pre-patch/30-alb-deregister")
	e.run(t, "post-patch/10-alb-register")
	e.run(t, "post-patch/10-alb-register")
	tgt := "--target-group-arn " + arn + " --targets Id=i-0123456789abcdef0,Port=8080"
	want := []string{
		"aws --region eu-west-1 elbv2 describe-target-health " + tgt + " --query TargetHealthDescriptions[0].TargetHealth.State --output text",
		"aws --region eu-west-1 elbv2 deregister-targets " + tgt,
		"aws --region eu-west-1 elbv2 wait target-deregistered " + tgt,
		"aws --region eu-west-1 elbv2 describe-target-health " + tgt + " --query TargetHealthDescriptions[0].TargetHealth.State --output text",
		"aws --region eu-west-1 elbv2 register-targets " + tgt,
		"aws --region eu-west-1 elbv2 wait target-in-service " + tgt,
	}
	if got := e.calls(t); strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("calls\n got %q\nwant %q", got, want)
	}
}

// TestExamplesPassDiscovery: as installed (root-owned, 0755) every example
// is a runnable hook and none is skipped for its name.
func TestExamplesPassDiscovery(t *testing.T) {
	root := copyTree(t, examples)
	n := 0
	for _, p := range Phases {
		hs, err := Discover(root, p)
		if err != nil {
			t.Fatal(err)
		}
		for _, h := range hs {
			n++
			if h.State != Runnable {
				t.Errorf("%s/%s: %s (%s)", p, h.Name, h.State, h.Reason)
			}
		}
	}
	if n != 6 {
		t.Errorf("%d example hooks, want 6", n)
	}
}
