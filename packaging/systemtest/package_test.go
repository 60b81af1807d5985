package systemtest

import (
	"context"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"
)

// defaultMetrics is the packaged configuration's endpoint, reached from the
// host because the container shares its network.
const defaultMetrics = "http://127.0.0.1:10795/metrics"

// copyIn copies a host file into the container's root at dst.
func copyIn(t *testing.T, c *container, src, dst string) {
	t.Helper()
	data, err := os.ReadFile(src)
	if err != nil {
		t.Fatal(err)
	}
	full := filepath.Join(c.Dir, dst)
	if err := os.MkdirAll(filepath.Dir(full), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(full, data, 0o644); err != nil {
		t.Fatal(err)
	}
}

// installDeb installs a .deb inside the container with dpkg, as an operator
// would, and returns dpkg's output. The copy goes to /var/tmp: the booted
// container mounts a tmpfs over /tmp.
func installDeb(t *testing.T, c *container, deb string) string {
	t.Helper()
	copyIn(t, c, deb, "/var/tmp/"+filepath.Base(deb))
	return c.run("dpkg", "-i", "/var/tmp/"+filepath.Base(deb))
}

// waitActive waits until unit is active, failing with its journal.
func waitActive(t *testing.T, c *container, unit string) {
	t.Helper()
	if err := poll(60*time.Second, func() (bool, error) { return c.prop(unit, "ActiveState") == "active", nil }); err != nil {
		t.Fatalf("%s not active (state %s): %v\n%s", unit, c.prop(unit, "ActiveState"), err, c.journal(unit))
	}
}

// scrape fetches a metrics endpoint, waiting (bounded) for it to answer.
func scrape(t *testing.T, url string) string {
	t.Helper()
	var body string
	err := poll(30*time.Second, func() (bool, error) {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			return false, nil
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		body = string(b)
		return resp.StatusCode == http.StatusOK, nil
	})
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	return body
}

// Scenario 1: a plain dpkg -i leaves patchd enabled, running, serving
// /metrics on its documented port, and its own check clean.
func TestInstallDeb(t *testing.T) {
	c := boot(t, newRoot(t), "patchd-e2e-install")
	installDeb(t, c, suite.deb)

	if got := c.prop("patchd.service", "UnitFileState"); got != "enabled" {
		t.Errorf("patchd.service UnitFileState = %q after install, want enabled", got)
	}
	waitActive(t, c, "patchd.service")
	body := scrape(t, defaultMetrics)
	for _, want := range []string{"patchd_build_info", "patchd_config_last_reload_successful 1"} {
		if !strings.Contains(body, want) {
			t.Errorf("/metrics lacks %q", want)
		}
	}
	if out, err := c.execOut("patchd", "check"); err != nil {
		t.Errorf("patchd check after a clean install: %v\n%s", err, out)
	}
	// The test's drop-in (newRoot) keeps the packaged configuration off the
	// metadata address of whatever host runs this.
	if j := c.journal("patchd.service"); !strings.Contains(j, "AWS_EC2_METADATA_SERVICE_ENDPOINT") {
		t.Errorf("patchd did not take the IMDS address from the environment:\n%s", j)
	}
	// The README's way to apply a configuration change on a minimal host
	// (no procps, so no /bin/kill).
	if out, err := c.execOut("systemctl", "reload", "patchd.service"); err != nil {
		t.Errorf("systemctl reload patchd: %v\n%s\n%s", err, out, c.prop("patchd.service", "ExecReload"))
	}
	if t.Failed() {
		t.Log(c.journal("patchd.service"))
	}
}

// repackNewer builds a newer version of the package under test: the same
// files and scripts, a version that sorts after it, and patchd binaries (the
// CLI and the full one) that report that version, as the next release
// would.
func repackNewer(t *testing.T) (deb, version string) {
	t.Helper()
	tmp := t.TempDir()
	tree := filepath.Join(tmp, "tree")
	if out, err := exec.Command("dpkg-deb", "-R", suite.deb, tree).CombinedOutput(); err != nil {
		t.Fatalf("dpkg-deb -R %s: %v\n%s", suite.deb, err, out)
	}
	control := filepath.Join(tree, "DEBIAN", "control")
	data, err := os.ReadFile(control)
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile(`(?m)^Version: (\S+)$`).FindSubmatch(data)
	if m == nil {
		t.Fatalf("%s has no Version field", control)
	}
	old := string(m[1])
	// "+e2e" sorts after the version it extends in dpkg's order.
	version = strings.TrimSuffix(old, "-1") + "+e2e-1"
	data = []byte(strings.Replace(string(data), "Version: "+old, "Version: "+version, 1))
	if err := os.WriteFile(control, data, 0o644); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	for _, b := range []struct{ path, tags string }{
		{"usr/bin/patchd", "patchd_cli"},
		{"usr/libexec/patchd/patchd-daemon", ""},
	} {
		build := exec.CommandContext(ctx, "go", "build", "-trimpath", "-tags="+b.tags,
			"-ldflags", "-s -w -X github.com/prometheus/common/version.Version="+version,
			"-o", filepath.Join(tree, b.path), "./cmd/patchd")
		build.Dir = suite.repo
		build.Env = append(os.Environ(), "CGO_ENABLED=0")
		if out, err := build.CombinedOutput(); err != nil {
			t.Fatalf("building the newer %s: %v\n%s", b.path, err, out)
		}
	}
	deb = filepath.Join(tmp, "patchd_"+version+"_newer.deb")
	if out, err := exec.Command("dpkg-deb", "--root-owner-group", "-b", tree, deb).CombinedOutput(); err != nil {
		t.Fatalf("dpkg-deb -b: %v\n%s", err, out)
	}
	return deb, version
}

// Scenario 5: an upgrade keeps the service running and the operator's
// configuration edit; remove stops and disables it; purge deletes its state.
func TestUpgradeRemovePurge(t *testing.T) {
	newer, newVersion := repackNewer(t)
	c := boot(t, newRoot(t), "patchd-e2e-upgrade")
	installDeb(t, c, suite.deb)
	waitActive(t, c, "patchd.service")

	// The operator's edit: a setting patchd must still honour afterwards.
	conf := filepath.Join(c.Dir, "etc/patchd/patchd.yaml")
	orig, err := os.ReadFile(conf)
	if err != nil {
		t.Fatal(err)
	}
	const commented, edit = "  # level: info\n", "  level: debug # operator edit\n"
	if !strings.Contains(string(orig), commented) {
		t.Fatalf("packaged %s has no %q line to edit", conf, commented)
	}
	if err := os.WriteFile(conf, []byte(strings.Replace(string(orig), commented, edit, 1)), 0o644); err != nil {
		t.Fatal(err)
	}
	pidBefore := c.prop("patchd.service", "MainPID")

	out := installDeb(t, c, newer)
	waitActive(t, c, "patchd.service")
	for _, bin := range []string{"patchd", "/usr/libexec/patchd/patchd-daemon"} {
		if v := c.run(bin, "version"); !strings.Contains(v, newVersion) {
			t.Errorf("%s version after the upgrade = %q, want %s\ndpkg:\n%s", bin, v, newVersion, out)
		}
	}
	if pid := c.prop("patchd.service", "MainPID"); pid == pidBefore {
		t.Errorf("patchd MainPID %s unchanged: the upgrade did not restart the running service onto the new binary", pid)
	}
	got, _ := os.ReadFile(conf)
	if !strings.Contains(string(got), edit) {
		t.Errorf("the operator's edit to /etc/patchd/patchd.yaml was lost in the upgrade; now:\n%s", got)
	}
	if _, err := os.Stat(conf + ".dpkg-new"); err == nil {
		t.Errorf("upgrade left %s.dpkg-new", conf)
	}

	c.run("dpkg", "-r", "patchd")
	if st := c.prop("patchd.service", "ActiveState"); st == "active" || st == "activating" {
		t.Errorf("patchd.service %s after dpkg -r, want stopped", st)
	}
	if _, err := os.Lstat(filepath.Join(c.Dir, "etc/systemd/system/multi-user.target.wants/patchd.service")); err == nil {
		t.Errorf("patchd.service still enabled (wants symlink) after dpkg -r")
	}
	if _, err := os.Stat(conf); err != nil {
		t.Errorf("dpkg -r removed the configuration %s (only purge may): %v", conf, err)
	}

	c.run("dpkg", "-P", "patchd")
	for _, gone := range []string{"var/lib/patchd", "etc/patchd/patchd.yaml"} {
		if _, err := os.Stat(filepath.Join(c.Dir, gone)); err == nil {
			t.Errorf("/%s still there after dpkg -P", gone)
		}
	}
	if t.Failed() {
		t.Log(c.journal("patchd.service"))
	}
}

// Scenario 6: the .rpm, installed with rpm --root into a root that has never
// booted (as an image build does), comes up enabled and running at first boot.
func TestRPMFirstBoot(t *testing.T) {
	if suite.rpm == "" {
		t.Fatalf("no .rpm in %s/packages: make package builds it", suite.build)
	}
	if _, err := exec.LookPath("rpm"); err != nil {
		t.Fatal("rpm not found: apt-get install rpm")
	}
	dir := newRoot(t)
	for _, args := range [][]string{
		{"--root", dir, "--initdb"},
		// The Debian root has no rpm database of its dependencies (/bin/sh,
		// systemd): --nodeps, as rpm on a foreign root must.
		{"--root", dir, "-i", "--nodeps", suite.rpm},
	} {
		if out, err := exec.Command("rpm", args...).CombinedOutput(); err != nil {
			t.Fatalf("rpm %s: %v\n%s", strings.Join(args, " "), err, out)
		}
	}
	c := boot(t, dir, "patchd-e2e-rpm")
	if got := c.prop("patchd.service", "UnitFileState"); got != "enabled" {
		t.Errorf("patchd.service UnitFileState = %q after rpm -i, want enabled", got)
	}
	waitActive(t, c, "patchd.service")
	scrape(t, defaultMetrics)
	if out, err := c.execOut("patchd", "check"); err != nil {
		t.Errorf("patchd check: %v\n%s", err, out)
	}
}
