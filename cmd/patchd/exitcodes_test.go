package main

import (
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/patchd/patchd/agent/ledger"
)

// TestGateExitCodes runs the real binary against a stand-in daemon on the
// control socket that answers each way the real one can: the exit code
// must say what happened, as docs/cli.md lists it.
func TestGateExitCodes(t *testing.T) {
	tr := newTestTree(t)
	args := append([]string{"gate", "pre-patch", "--document-id", "doc-1", "--timeout", "2s"}, tr.flags()...)

	if code, _, errOut := runPatchd(t, args...); code != exitUnreachable || !strings.Contains(errOut, "unreachable") {
		t.Errorf("no daemon: exit %d, want %d; %s", code, exitUnreachable, errOut)
	}

	answer := make(chan func(http.ResponseWriter, *http.Request), 1)
	l, err := net.Listen("unix", tr.Socket)
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { (<-answer)(w, r) })}
	go srv.Serve(l)
	t.Cleanup(func() { srv.Close() })
	reply := func(status int, body any) func(http.ResponseWriter, *http.Request) {
		return func(w http.ResponseWriter, _ *http.Request) {
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(status)
			_ = json.NewEncoder(w).Encode(body)
		}
	}
	for _, tc := range []struct {
		name    string
		handler func(http.ResponseWriter, *http.Request)
		args    []string
		code    int
		stderr  string
	}{
		{"phase succeeded", reply(200, map[string]any{"ok": true, "cycle_id": "c1"}), args, exitOK, ""},
		{"a hook failed", reply(200, map[string]any{"ok": false, "cycle_id": "c1"}), args, exitFailure, "do not patch"},
		{"daemon stopping", reply(503, map[string]string{"error": "patchd is stopping; run the gate again once it is back"}), args, exitUnreachable, "stopping"},
		{"daemon refuses", reply(409, map[string]string{"error": "no open patch cycle and none finished"}), args, exitRefused, "no open patch cycle"},
		{"wait ends first", func(w http.ResponseWriter, r *http.Request) { <-r.Context().Done() },
			append([]string{"gate", "pre-patch", "--document-id", "doc-1", "--timeout", "300ms"}, tr.flags()...), exitTimeout, "--timeout"},
	} {
		answer <- tc.handler
		code, _, errOut := runPatchd(t, tc.args...)
		if code != tc.code || !strings.Contains(errOut, tc.stderr) {
			t.Errorf("%s: exit %d, want %d; stderr %q", tc.name, code, tc.code, errOut)
		}
	}

	// A bad configuration is 2 here as in every subcommand; the daemon is
	// not asked.
	if err := os.WriteFile(tr.Config, []byte("hooks:\n  timeout: 5x\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if code, _, errOut := runPatchd(t, args...); code != exitUsage || !strings.Contains(errOut, "invalid configuration") {
		t.Errorf("bad configuration: exit %d, want %d; %s", code, exitUsage, errOut)
	}
}

// TestBadConfigExitCode: every subcommand that reads the configuration
// exits 2 on an invalid one.
func TestBadConfigExitCode(t *testing.T) {
	tr := newTestTree(t)
	if err := os.WriteFile(tr.Config, []byte("log:\n  level: loud\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, cmd := range [][]string{
		{"run"}, {"check"}, {"status"}, {"history"}, {"gate", "pre-patch"}, {"gate", "post-patch"},
		{"hooks", "list"}, {"hooks", "run", "pre-patch"}, {"agent", "status"}, {"agent", "restart"},
	} {
		code, _, errOut := runPatchd(t, append(cmd, tr.flags()...)...)
		if code != exitUsage || !strings.Contains(errOut, "log.level") {
			t.Errorf("patchd %s with a bad configuration: exit %d, want %d; %s", strings.Join(cmd, " "), code, exitUsage, errOut)
		}
	}
}

// TestExitCodesDocumented keeps docs/cli.md and the SSM document's gate
// step in step with the codes the CLI uses.
func TestExitCodesDocumented(t *testing.T) {
	doc, err := os.ReadFile("../../docs/cli.md")
	if err != nil {
		t.Fatal(err)
	}
	for _, code := range []int{exitOK, exitFailure, exitUsage, exitUnreachable, exitRefused, exitTimeout} {
		if row := fmt.Sprintf("\n| %d | ", code); !strings.Contains(string(doc), row) {
			t.Errorf("docs/cli.md has no row for exit code %d", code)
		}
	}
	for _, name := range []string{"patchd-PatchWithHooks.json", "patchd-PatchWithHooksGated.json"} {
		ssmDoc, err := os.ReadFile("../../packaging/ssm/" + name)
		if err != nil {
			t.Fatal(err)
		}
		for _, code := range []int{exitFailure, exitUsage, exitUnreachable, exitRefused, exitTimeout} {
			if !regexp.MustCompile(fmt.Sprintf(`[ ,;]%d: `, code)).Match(ssmDoc) {
				t.Errorf("the gate step of %s does not explain exit code %d", name, code)
			}
		}
	}
}

// TestHistorySaysWhyUnknown: patchd history and status show why a cycle's
// result is unknown.
func TestHistorySaysWhyUnknown(t *testing.T) {
	tr := newTestTree(t)
	if err := os.MkdirAll(tr.State, 0o700); err != nil {
		t.Fatal(err)
	}
	why := "the patch command ended while patchd was not watching; the last status seen (SuccessAndReboot) is not final"
	e := ledger.Entry{CycleID: "c1", Trigger: "observed", Opened: time.Now(), Closed: time.Now(), Result: "unknown", ResultReason: why}
	if err := ledger.Append(filepath.Join(tr.State, ledger.FileName), e, 10); err != nil {
		t.Fatal(err)
	}
	code, out, errOut := runPatchd(t, append([]string{"history"}, tr.flags()...)...)
	if code != exitOK || !strings.Contains(out, "unknown: "+why) {
		t.Errorf("history: exit %d\n%s%s", code, out, errOut)
	}
	code, out, _ = runPatchd(t, append([]string{"history", "-o", "json"}, tr.flags()...)...)
	if code != exitOK || !strings.Contains(out, `"result_reason":`) {
		t.Errorf("history json: exit %d\n%s", code, out)
	}
}
