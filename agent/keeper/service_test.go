package keeper

import (
	"context"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
)

// fakeTool writes an executable shell script that appends its arguments to
// calls.log and answers from files in dir: "<verb>.out" is printed and
// "<verb>.rc" is the exit code (verb is the first argument; for show it is
// show-<unit>).
func fakeTool(t *testing.T, dir, name string) (path, calls string) {
	t.Helper()
	path = filepath.Join(dir, name)
	calls = filepath.Join(dir, "calls.log")
	script := `#!/bin/sh
echo "$*" >> ` + calls + `
verb="$1"
if [ "$1" = show ]; then verb="show-$4"; fi
if [ -f "` + dir + `/$verb.out" ]; then cat "` + dir + `/$verb.out"; fi
rc=0
if [ -f "` + dir + `/$verb.rc" ]; then read rc < "` + dir + `/$verb.rc"; fi
exit $rc
`
	if err := os.WriteFile(path, []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	return path, calls
}

func answer(t *testing.T, dir, verb, out string, rc int) {
	t.Helper()
	if err := os.WriteFile(filepath.Join(dir, verb+".out"), []byte(out+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, verb+".rc"), []byte(string(rune('0'+rc))+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
}

func readCalls(t *testing.T, calls string) []string {
	t.Helper()
	b, err := os.ReadFile(calls)
	if err != nil && !os.IsNotExist(err) {
		t.Fatal(err)
	}
	s := strings.TrimSpace(string(b))
	if s == "" {
		return nil
	}
	return strings.Split(s, "\n")
}

func TestSystemd(t *testing.T) {
	ctx := context.Background()
	for _, tc := range []struct {
		name       string
		classic    string // LoadState of amazon-ssm-agent.service
		snap       string
		isActive   string
		isActiveRC int
		wantUnit   string
		wantActive bool
	}{
		{"classic unit", "loaded", "not-found", "active", 0, SystemdUnit, true},
		{"snap unit", "not-found", "loaded", "active", 0, SnapUnit, true},
		{"neither: classic name", "not-found", "not-found", "inactive", 3, SystemdUnit, false},
		{"failed", "loaded", "not-found", "failed", 3, SystemdUnit, false},
		{"activating", "loaded", "not-found", "activating", 3, SystemdUnit, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			systemctl, calls := fakeTool(t, dir, "systemctl")
			answer(t, dir, "show-"+SystemdUnit, "LoadState="+tc.classic, 0)
			answer(t, dir, "show-"+SnapUnit, "LoadState="+tc.snap, 0)
			answer(t, dir, "is-active", tc.isActive, tc.isActiveRC)
			runDir := filepath.Join(dir, "run-systemd")
			if err := os.Mkdir(runDir, 0o755); err != nil {
				t.Fatal(err)
			}
			m, err := Detect(ctx, DetectOptions{Service: "auto", Systemctl: systemctl, SystemdRunDir: runDir,
				Initctl: filepath.Join(dir, "no-initctl"), GOOS: "linux"})
			if err != nil {
				t.Fatal(err)
			}
			if m.Name() != "systemd:"+tc.wantUnit {
				t.Fatalf("detected %s, want systemd:%s", m.Name(), tc.wantUnit)
			}
			active, err := m.Active(ctx)
			if err != nil || active != tc.wantActive {
				t.Fatalf("Active = %v, %v; want %v", active, err, tc.wantActive)
			}
			if err := m.Restart(ctx); err != nil {
				t.Fatal(err)
			}
			got := readCalls(t, calls)
			if got[len(got)-1] != "restart "+tc.wantUnit || got[len(got)-2] != "is-active "+tc.wantUnit {
				t.Fatalf("systemctl calls %q, want is-active then restart of %s", got, tc.wantUnit)
			}
		})
	}
}

func TestSystemdErrors(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	systemctl, _ := fakeTool(t, dir, "systemctl")
	answer(t, dir, "restart", "Job for amazon-ssm-agent.service failed because the control process exited with error code.", 1)
	m := &Systemd{Systemctl: systemctl, Unit: SystemdUnit}
	err := m.Restart(ctx)
	if err == nil || !strings.Contains(err.Error(), "control process exited") {
		t.Fatalf("Restart error %v, want systemctl's message", err)
	}
	missing := &Systemd{Systemctl: filepath.Join(dir, "nope"), Unit: SystemdUnit}
	if _, err := missing.Active(ctx); err == nil {
		t.Fatal("Active with a missing systemctl: no error")
	}
}

func TestUpstart(t *testing.T) {
	ctx := context.Background()
	for _, tc := range []struct {
		status     string
		wantActive bool
		wantVerb   string
	}{
		{"amazon-ssm-agent start/running, process 2561", true, "restart"},
		{"amazon-ssm-agent stop/waiting", false, "start"},
	} {
		t.Run(tc.wantVerb, func(t *testing.T) {
			dir := t.TempDir()
			initctl, calls := fakeTool(t, dir, "initctl")
			answer(t, dir, "status", tc.status, 0)
			m, err := Detect(ctx, DetectOptions{Service: "auto", Systemctl: filepath.Join(dir, "no-systemctl"),
				SystemdRunDir: filepath.Join(dir, "no-run-systemd"), Initctl: initctl, GOOS: "linux"})
			if err != nil {
				t.Fatal(err)
			}
			if m.Name() != "upstart:amazon-ssm-agent" {
				t.Fatalf("detected %s, want upstart", m.Name())
			}
			if active, err := m.Active(ctx); err != nil || active != tc.wantActive {
				t.Fatalf("Active = %v, %v; want %v", active, err, tc.wantActive)
			}
			if err := m.Restart(ctx); err != nil {
				t.Fatal(err)
			}
			got := readCalls(t, calls)
			if got[len(got)-1] != tc.wantVerb+" amazon-ssm-agent" {
				t.Fatalf("initctl calls %q, want %s amazon-ssm-agent last", got, tc.wantVerb)
			}
		})
	}
}

func TestCommand(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	marker := filepath.Join(dir, "restarted")
	m, err := Detect(ctx, DetectOptions{Service: "command", RestartCommand: "echo ok > " + marker})
	if err != nil {
		t.Fatal(err)
	}
	if err := m.Restart(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(marker); err != nil {
		t.Fatalf("restart command did not run: %v", err)
	}
	if active, err := m.Active(ctx); !active || err != nil {
		t.Fatalf("Active after exit 0 = %v, %v; want true", active, err)
	}
	bad, _ := Detect(ctx, DetectOptions{Service: "command", RestartCommand: "echo broken >&2; exit 7"})
	if err := bad.Restart(ctx); err == nil || !strings.Contains(err.Error(), "broken") {
		t.Fatalf("failing command: %v, want an error with its output", err)
	}
	if active, _ := bad.Active(ctx); active {
		t.Fatal("Active after a failed restart command = true")
	}
}

func TestDetectChoices(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	for _, tc := range []struct {
		opts    DetectOptions
		want    string
		wantErr string
	}{
		{DetectOptions{Service: "systemd:custom-agent.service", Systemctl: "/x/systemctl"}, "systemd:custom-agent.service", ""},
		{DetectOptions{Service: "snap", Systemctl: "/x/systemctl"}, "systemd:" + SnapUnit, ""},
		{DetectOptions{Service: "upstart", Initctl: "/x/initctl"}, "upstart:amazon-ssm-agent", ""},
		{DetectOptions{Service: "command"}, "", "restart_command is empty"},
		{DetectOptions{Service: "launchd"}, "", "not a service manager"},
		{DetectOptions{Service: "auto", Systemctl: filepath.Join(dir, "a"), Initctl: filepath.Join(dir, "b"),
			SystemdRunDir: filepath.Join(dir, "c"), GOOS: "linux"}, "none", ""},
	} {
		m, err := Detect(ctx, tc.opts)
		if tc.wantErr != "" {
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Errorf("Detect(%+v) error %v, want %q", tc.opts, err, tc.wantErr)
			}
			continue
		}
		if err != nil || m.Name() != tc.want {
			t.Errorf("Detect(%+v) = %v, %v; want %s", tc.opts, m, err, tc.want)
		}
	}
	if runtime.GOOS != "windows" {
		if _, err := Detect(ctx, DetectOptions{Service: "windows"}); err == nil {
			t.Error("windows manager on a non-Windows host: no error")
		}
	}
}
