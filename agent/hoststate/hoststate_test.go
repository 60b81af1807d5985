package hoststate

import (
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/jonboulle/clockwork"
	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"

	"github.com/patchd/patchd/agent/config"
)

// fixtureHost is a temp tree with fake package-manager commands: real
// executables that print the samples in testdata/ and exit as the real ones.
type fixtureHost struct {
	bin, state, patchDir, marker string
}

func newFixtureHost(t *testing.T) fixtureHost {
	t.Helper()
	root := t.TempDir()
	h := fixtureHost{
		bin:      filepath.Join(root, "bin"),
		state:    filepath.Join(root, "state"),
		patchDir: filepath.Join(root, "patch-configuration"),
		marker:   filepath.Join(root, "reboot-required"),
	}
	for _, d := range []string{h.bin, h.state, h.patchDir} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	return h
}

// script installs a command that runs body under /bin/sh; $TD is testdata/.
func (h fixtureHost) script(t *testing.T, name, body string) {
	t.Helper()
	td, err := filepath.Abs("testdata")
	if err != nil {
		t.Fatal(err)
	}
	s := "#!/bin/sh\nTD=" + td + "\n" + body + "\n"
	if err := os.WriteFile(filepath.Join(h.bin, name), []byte(s), 0o755); err != nil {
		t.Fatal(err)
	}
}

func (h fixtureHost) lookPath(name string) (string, error) {
	p := filepath.Join(h.bin, name)
	if _, err := os.Stat(p); err != nil {
		return "", exec.ErrNotFound
	}
	return p, nil
}

func (h fixtureHost) cfg() config.HostState {
	c := config.Default().HostState
	c.RebootRequiredFile = h.marker
	c.PatchConfigurationDir = h.patchDir
	c.CommandTimeout = 30 * time.Second
	return c
}

func (h fixtureHost) new(clock clockwork.Clock) *HostState {
	return New(Options{Config: h.cfg(), StateDir: h.state, Clock: clock, LookPath: h.lookPath})
}

func (h fixtureHost) debian(t *testing.T) {
	h.script(t, "apt-get", `exec /bin/cat "$TD/apt-get-s-dist-upgrade.debian12.txt"`)
	h.script(t, "dpkg-query", `exec /bin/cat "$TD/dpkg-query-linux-image.debian12.txt"`)
	h.script(t, "uname", `echo 6.1.0-10-amd64`)
}

func (h fixtureHost) rhel(t *testing.T, rebootRequired bool) {
	nr := `/bin/cat "$TD/needs-restarting-r.not-required.txt"; exit 0`
	if rebootRequired {
		nr = `/bin/cat "$TD/needs-restarting-r.required.txt"; exit 1`
	}
	h.script(t, "dnf", `case "$*" in
"-C -q check-update") /bin/cat "$TD/dnf-check-update.txt"; exit 100;;
"-C -q updateinfo list --security") exec /bin/cat "$TD/dnf-updateinfo-list-security.almalinux10.txt";;
"-C -q needs-restarting -r") `+nr+`;;
*) echo "unexpected dnf $*" >&2; exit 3;;
esac`)
	h.script(t, "rpm", `exec /bin/cat "$TD/rpm-q-kernel.al2023.txt"`)
	h.script(t, "uname", `echo 6.1.112-122.189.amzn2023.x86_64`)
}

func (h fixtureHost) summary(t *testing.T) {
	b, err := os.ReadFile(filepath.Join("testdata", "patch-inventory-from-last-operation.ubuntu2004.json"))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(h.patchDir, PatchSummaryFile), b, 0o644); err != nil {
		t.Fatal(err)
	}
}

var t0 = time.Unix(1_700_000_000, 0)

// compare checks the exposition of the named metrics (HELP lines aside)
// through a pedantic registry, which also checks the descriptions.
func compare(t *testing.T, h *HostState, want string, names ...string) {
	t.Helper()
	if got := collectText(t, h, names...); got != want {
		t.Errorf("exposition:\n%s\nwant:\n%s", got, want)
	}
}

func collectText(t *testing.T, h *HostState, names ...string) string {
	t.Helper()
	reg := prometheus.NewPedanticRegistry()
	if err := reg.Register(h); err != nil {
		t.Fatal(err)
	}
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	byName := map[string]*dto.MetricFamily{}
	for _, mf := range mfs {
		byName[mf.GetName()] = mf
	}
	var b strings.Builder
	for _, n := range names {
		mf, ok := byName["patchd_"+n]
		if !ok {
			continue
		}
		var one strings.Builder
		if _, err := expfmt.MetricFamilyToText(&one, mf); err != nil {
			t.Fatal(err)
		}
		for _, line := range strings.SplitAfter(one.String(), "\n") {
			if !strings.HasPrefix(line, "# HELP ") {
				b.WriteString(line)
			}
		}
	}
	return b.String()
}

func TestDebianHost(t *testing.T) {
	fh := newFixtureHost(t)
	fh.debian(t)
	fh.summary(t)
	marked := time.Unix(1_699_000_000, 0)
	if err := os.WriteFile(fh.marker, []byte("*** System restart required ***\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Chtimes(fh.marker, marked, marked); err != nil {
		t.Fatal(err)
	}
	clock := clockwork.NewFakeClockAt(t0)
	h := fh.new(clock)
	h.CheckAll(context.Background())
	compare(t, h, `# TYPE patchd_reboot_required gauge
patchd_reboot_required 1
# TYPE patchd_reboot_required_since_timestamp_seconds gauge
patchd_reboot_required_since_timestamp_seconds 1.699e+09
# TYPE patchd_reboot_required_last_check_timestamp_seconds gauge
patchd_reboot_required_last_check_timestamp_seconds 1.7e+09
# TYPE patchd_reboot_required_check_errors_total counter
patchd_reboot_required_check_errors_total 0
# TYPE patchd_updates_pending gauge
patchd_updates_pending{kind="all"} 124
patchd_updates_pending{kind="security"} 77
# TYPE patchd_kernel_running_is_latest gauge
patchd_kernel_running_is_latest 0
# TYPE patchd_kernel_check_errors_total counter
patchd_kernel_check_errors_total 0
# TYPE patchd_aws_patch_packages gauge
patchd_aws_patch_packages{state="failed"} 0
patchd_aws_patch_packages{state="installed"} 198
patchd_aws_patch_packages{state="installed_other"} 1077
patchd_aws_patch_packages{state="installed_pending_reboot"} 0
patchd_aws_patch_packages{state="installed_rejected"} 0
patchd_aws_patch_packages{state="missing"} 0
patchd_aws_patch_packages{state="not_applicable"} 10254
# TYPE patchd_aws_patch_operation_end_timestamp_seconds gauge
patchd_aws_patch_operation_end_timestamp_seconds 1.635826648e+09
# TYPE patchd_aws_patch_check_errors_total counter
patchd_aws_patch_check_errors_total 0
`, "reboot_required", "reboot_required_since_timestamp_seconds", "reboot_required_last_check_timestamp_seconds",
		"reboot_required_check_errors_total", "updates_pending", "kernel_running_is_latest", "kernel_check_errors_total",
		"aws_patch_packages", "aws_patch_operation_end_timestamp_seconds", "aws_patch_check_errors_total")

	// The marker goes away at the reboot: no longer required, time cleared
	// and the cleared state persisted.
	if err := os.Remove(fh.marker); err != nil {
		t.Fatal(err)
	}
	h.CheckAll(context.Background())
	compare(t, h, `# TYPE patchd_reboot_required gauge
patchd_reboot_required 0
# TYPE patchd_reboot_required_since_timestamp_seconds gauge
patchd_reboot_required_since_timestamp_seconds 0
`, "reboot_required", "reboot_required_since_timestamp_seconds")
	var p persisted
	b, err := os.ReadFile(filepath.Join(fh.state, StateFile))
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(b, &p); err != nil || p.RebootRequiredSince != 0 {
		t.Errorf("state file %s: %+v, %v", b, p, err)
	}
}

func TestRHELHostRebootSinceSurvivesRestart(t *testing.T) {
	fh := newFixtureHost(t)
	fh.rhel(t, true)
	clock := clockwork.NewFakeClockAt(t0)
	h := fh.new(clock)
	h.CheckAll(context.Background())
	compare(t, h, `# TYPE patchd_reboot_required gauge
patchd_reboot_required 1
# TYPE patchd_reboot_required_since_timestamp_seconds gauge
patchd_reboot_required_since_timestamp_seconds 1.7e+09
# TYPE patchd_updates_pending gauge
patchd_updates_pending{kind="all"} 8
patchd_updates_pending{kind="security"} 6
# TYPE patchd_kernel_running_is_latest gauge
patchd_kernel_running_is_latest 1
# TYPE patchd_aws_patch_check_errors_total counter
patchd_aws_patch_check_errors_total 1
`, "reboot_required", "reboot_required_since_timestamp_seconds", "updates_pending", "kernel_running_is_latest",
		"aws_patch_check_errors_total", "aws_patch_packages")

	// A restart a day later: the time the reboot became required is the
	// first one seen, not the restart's.
	clock.Advance(24 * time.Hour)
	h2 := fh.new(clock)
	h2.CheckAll(context.Background())
	compare(t, h2, `# TYPE patchd_reboot_required_since_timestamp_seconds gauge
patchd_reboot_required_since_timestamp_seconds 1.7e+09
# TYPE patchd_reboot_required_last_check_timestamp_seconds gauge
patchd_reboot_required_last_check_timestamp_seconds 1.7000864e+09
`, "reboot_required_since_timestamp_seconds", "reboot_required_last_check_timestamp_seconds")

	fh.rhel(t, false)
	h2.CheckAll(context.Background())
	compare(t, h2, `# TYPE patchd_reboot_required gauge
patchd_reboot_required 0
# TYPE patchd_reboot_required_since_timestamp_seconds gauge
patchd_reboot_required_since_timestamp_seconds 0
`, "reboot_required", "reboot_required_since_timestamp_seconds")
}

func TestCheckErrors(t *testing.T) {
	for _, tc := range []struct {
		name  string
		setup func(t *testing.T, fh fixtureHost)
		want  string
	}{
		{"no package manager", func(t *testing.T, fh fixtureHost) {}, `# TYPE patchd_reboot_required_check_errors_total counter
patchd_reboot_required_check_errors_total 1
# TYPE patchd_updates_pending_check_errors_total counter
patchd_updates_pending_check_errors_total 1
# TYPE patchd_kernel_check_errors_total counter
patchd_kernel_check_errors_total 1
# TYPE patchd_aws_patch_check_errors_total counter
patchd_aws_patch_check_errors_total 1
`},
		// dnf without the needs-restarting plugin exits 1 as for "reboot
		// required": a check error, and no patchd_reboot_required at all.
		{"needs-restarting missing", func(t *testing.T, fh fixtureHost) {
			fh.rhel(t, false)
			fh.script(t, "dnf", `case "$*" in
*needs-restarting*) /bin/cat "$TD/dnf-needs-restarting.no-plugin.txt" >&2; exit 1;;
*) exit 0;;
esac`)
		}, `# TYPE patchd_reboot_required_check_errors_total counter
patchd_reboot_required_check_errors_total 1
# TYPE patchd_updates_pending gauge
patchd_updates_pending{kind="all"} 0
patchd_updates_pending{kind="security"} 0
# TYPE patchd_updates_pending_check_errors_total counter
patchd_updates_pending_check_errors_total 0
# TYPE patchd_kernel_check_errors_total counter
patchd_kernel_check_errors_total 0
# TYPE patchd_aws_patch_check_errors_total counter
patchd_aws_patch_check_errors_total 1
`},
		{"no dnf cache", func(t *testing.T, fh fixtureHost) {
			fh.rhel(t, false)
			fh.script(t, "dnf", `case "$*" in
*needs-restarting*) /bin/cat "$TD/needs-restarting-r.not-required.txt"; exit 0;;
*) echo "Error: Cache-only enabled but no cache for 'amazonlinux'" >&2; exit 1;;
esac`)
			fh.summary(t)
		}, `# TYPE patchd_reboot_required gauge
patchd_reboot_required 0
# TYPE patchd_reboot_required_check_errors_total counter
patchd_reboot_required_check_errors_total 0
# TYPE patchd_updates_pending_check_errors_total counter
patchd_updates_pending_check_errors_total 1
# TYPE patchd_kernel_check_errors_total counter
patchd_kernel_check_errors_total 0
# TYPE patchd_aws_patch_packages gauge
patchd_aws_patch_packages{state="failed"} 0
patchd_aws_patch_packages{state="installed"} 198
patchd_aws_patch_packages{state="installed_other"} 1077
patchd_aws_patch_packages{state="installed_pending_reboot"} 0
patchd_aws_patch_packages{state="installed_rejected"} 0
patchd_aws_patch_packages{state="missing"} 0
patchd_aws_patch_packages{state="not_applicable"} 10254
# TYPE patchd_aws_patch_check_errors_total counter
patchd_aws_patch_check_errors_total 0
`},
		// Exit 100 promises updates; rows patchd cannot read are an error,
		// not "0 pending".
		{"check-update rows unreadable", func(t *testing.T, fh fixtureHost) {
			fh.rhel(t, false)
			fh.script(t, "dnf", `case "$*" in
*needs-restarting*) /bin/cat "$TD/needs-restarting-r.not-required.txt"; exit 0;;
*check-update*) echo "Neue Pakete verfuegbar"; exit 100;;
*) exit 0;;
esac`)
			fh.summary(t)
		}, `# TYPE patchd_reboot_required gauge
patchd_reboot_required 0
# TYPE patchd_reboot_required_check_errors_total counter
patchd_reboot_required_check_errors_total 0
# TYPE patchd_updates_pending_check_errors_total counter
patchd_updates_pending_check_errors_total 1
# TYPE patchd_kernel_check_errors_total counter
patchd_kernel_check_errors_total 0
# TYPE patchd_aws_patch_packages gauge
patchd_aws_patch_packages{state="failed"} 0
patchd_aws_patch_packages{state="installed"} 198
patchd_aws_patch_packages{state="installed_other"} 1077
patchd_aws_patch_packages{state="installed_pending_reboot"} 0
patchd_aws_patch_packages{state="installed_rejected"} 0
patchd_aws_patch_packages{state="missing"} 0
patchd_aws_patch_packages{state="not_applicable"} 10254
# TYPE patchd_aws_patch_check_errors_total counter
patchd_aws_patch_check_errors_total 0
`},
		{"unknown summary schema", func(t *testing.T, fh fixtureHost) {
			fh.debian(t)
			if err := os.WriteFile(filepath.Join(fh.patchDir, PatchSummaryFile), []byte(`{"TypeName":"AWS:PatchSummary","SchemaVersion":"9.9","Content":[]}`), 0o644); err != nil {
				t.Fatal(err)
			}
		}, `# TYPE patchd_reboot_required gauge
patchd_reboot_required 0
# TYPE patchd_reboot_required_check_errors_total counter
patchd_reboot_required_check_errors_total 0
# TYPE patchd_updates_pending gauge
patchd_updates_pending{kind="all"} 124
patchd_updates_pending{kind="security"} 77
# TYPE patchd_updates_pending_check_errors_total counter
patchd_updates_pending_check_errors_total 0
# TYPE patchd_kernel_check_errors_total counter
patchd_kernel_check_errors_total 0
# TYPE patchd_aws_patch_check_errors_total counter
patchd_aws_patch_check_errors_total 1
`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			fh := newFixtureHost(t)
			tc.setup(t, fh)
			h := fh.new(clockwork.NewFakeClockAt(t0))
			h.CheckAll(context.Background())
			compare(t, h, tc.want, "reboot_required", "reboot_required_check_errors_total", "updates_pending",
				"updates_pending_check_errors_total", "kernel_check_errors_total", "aws_patch_packages",
				"aws_patch_check_errors_total")
		})
	}
}

func TestCommandTimeoutKillsGroup(t *testing.T) {
	fh := newFixtureHost(t)
	// The child of the command must die too: the whole group is killed.
	fh.script(t, "uname", `/bin/sleep 300 & wait`)
	r := execRunner{timeout: 300 * time.Millisecond, lookPath: fh.lookPath}
	start := time.Now()
	_, err := r.Run(context.Background(), "uname", "-r")
	if err == nil || !strings.Contains(err.Error(), "host_state.command_timeout") {
		t.Fatalf("err = %v, want a timeout naming the setting", err)
	}
	if d := time.Since(start); d > 20*time.Second {
		t.Errorf("took %s: the process group was not killed", d)
	}
}

func TestRunChecksAfterFirstDelayThenEveryInterval(t *testing.T) {
	fh := newFixtureHost(t)
	fh.debian(t)
	clock := clockwork.NewFakeClockAt(t0)
	h := New(Options{Config: fh.cfg(), StateDir: fh.state, Clock: clock, LookPath: fh.lookPath, FirstDelay: 10 * time.Second})
	rounds := make(chan struct{}, 10)
	h.afterRound = func() { rounds <- struct{}{} }
	resets := make(chan struct{}, 10)
	h.afterReset = func() { resets <- struct{}{} }
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- h.Run(ctx) }()
	wait := func(what string) {
		t.Helper()
		select {
		case <-rounds:
		case <-time.After(30 * time.Second):
			t.Fatalf("no round of checks %s", what)
		}
	}
	if err := clock.BlockUntilContext(ctx, 1); err != nil {
		t.Fatal(err)
	}
	select {
	case <-rounds:
		t.Fatal("checked before the first delay passed")
	default:
	}
	clock.Advance(10 * time.Second)
	wait("after the first delay")
	if err := clock.BlockUntilContext(ctx, 1); err != nil {
		t.Fatal(err)
	}
	select {
	case <-rounds:
		t.Fatal("a second round before the interval passed")
	default:
	}
	clock.Advance(time.Hour)
	wait("after one interval")

	// A reload to a shorter interval takes effect from now.
	if err := clock.BlockUntilContext(ctx, 1); err != nil {
		t.Fatal(err)
	}
	c := fh.cfg()
	c.Interval = time.Minute
	h.SetConfig(c)
	select {
	case <-resets:
	case <-time.After(30 * time.Second):
		t.Fatal("the reload did not reset the timer")
	}
	clock.Advance(time.Minute)
	wait("after the reloaded interval")
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("Run returned %v", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("Run did not return after cancel")
	}
}
