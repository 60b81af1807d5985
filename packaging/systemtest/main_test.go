// Package systemtest installs the built packages into a Debian root booted
// by a real systemd (systemd-nspawn) and plays patch runs, reboots, crashes
// and upgrades against them, asserting everything from outside the
// container. It needs root, debootstrap and systemd-container, so it only
// runs when PATCHD_E2E=1 (`make test-e2e` sets it when run as root).
package systemtest

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"sort"
	"strings"
	"testing"
)

// suite is what TestMain prepared for every scenario.
var suite struct {
	repo     string // repository root
	build    string // build directory (make's $(BUILD))
	rootfs   string // cached bookworm tarball
	deb, rpm string // the packages under test, for the host's architecture
	pkgDir   string // where they were copied
}

func TestMain(m *testing.M) {
	if os.Getenv("PATCHD_E2E") != "1" {
		fmt.Println("systemtest: skipped: set PATCHD_E2E=1 as root (make test-e2e does) to boot the packages under systemd-nspawn")
		os.Exit(0)
	}
	if err := setup(); err != nil {
		if suite.pkgDir != "" {
			os.RemoveAll(suite.pkgDir)
		}
		fmt.Fprintln(os.Stderr, "systemtest:", err)
		os.Exit(1)
	}
	before := cgroupsSnapshot()
	code := m.Run()
	removeNewCgroups(before)
	os.RemoveAll(suite.pkgDir)
	os.Exit(code)
}

func setup() error {
	if os.Geteuid() != 0 {
		return fmt.Errorf("needs root (systemd-nspawn, nsenter)")
	}
	for _, tool := range []string{"systemd-nspawn", "nsenter", "debootstrap", "dpkg-deb", "tar"} {
		if _, err := exec.LookPath(tool); err != nil {
			return fmt.Errorf("%s not found: apt-get install systemd-container debootstrap", tool)
		}
	}
	wd, err := os.Getwd()
	if err != nil {
		return err
	}
	suite.repo = filepath.Clean(filepath.Join(wd, "../.."))
	suite.build = os.Getenv("PATCHD_BUILD")
	if suite.build == "" {
		suite.build = filepath.Join(suite.repo, "build")
	}
	arch := map[string][2]string{"amd64": {"amd64", "x86_64"}, "arm64": {"arm64", "aarch64"}}[runtime.GOARCH]
	suite.deb = newest(filepath.Join(suite.build, "packages", "patchd_*_"+arch[0]+".deb"))
	suite.rpm = newest(filepath.Join(suite.build, "packages", "patchd-*."+arch[1]+".rpm"))
	if suite.deb == "" {
		return fmt.Errorf("no .deb for %s in %s/packages: run make package first", runtime.GOARCH, suite.build)
	}
	// A private copy: another `make package` may replace build/packages
	// while the scenarios run.
	if suite.pkgDir, err = os.MkdirTemp("", "patchd-e2e-pkgs-"); err != nil {
		return err
	}
	for _, p := range []*string{&suite.deb, &suite.rpm} {
		if *p == "" {
			continue
		}
		data, err := os.ReadFile(*p)
		if err != nil {
			return err
		}
		dst := filepath.Join(suite.pkgDir, filepath.Base(*p))
		if err := os.WriteFile(dst, data, 0o644); err != nil {
			return err
		}
		*p = dst
	}
	suite.rootfs, err = rootfsTar(suite.build)
	return err
}

// newest returns the last match of pattern in version order, or "".
func newest(pattern string) string {
	m, _ := filepath.Glob(pattern)
	if len(m) == 0 {
		return ""
	}
	sort.Strings(m)
	return m[len(m)-1]
}

// cgroupsSnapshot lists the cgroup directories directly below this
// process's cgroup in every hierarchy. systemd-nspawn --keep-unit creates
// "payload" and "supervisor" there and leaves them behind when it exits.
func cgroupsSnapshot() map[string]bool {
	seen := map[string]bool{}
	for _, d := range cgroupParents() {
		entries, _ := os.ReadDir(d)
		for _, e := range entries {
			if e.IsDir() {
				seen[filepath.Join(d, e.Name())] = true
			}
		}
	}
	return seen
}

func cgroupParents() []string {
	data, err := os.ReadFile("/proc/self/cgroup")
	if err != nil {
		return nil
	}
	var out []string
	for _, line := range strings.Split(strings.TrimSpace(string(data)), "\n") {
		parts := strings.SplitN(line, ":", 3)
		if len(parts) != 3 {
			continue
		}
		var mount string
		switch {
		case parts[0] == "0":
			mount = "/sys/fs/cgroup/unified"
			if _, err := os.Stat(mount); err != nil {
				mount = "/sys/fs/cgroup"
			}
		case strings.HasPrefix(parts[1], "name="):
			mount = "/sys/fs/cgroup/" + strings.TrimPrefix(parts[1], "name=")
		default:
			mount = "/sys/fs/cgroup/" + parts[1]
		}
		out = append(out, filepath.Join(mount, parts[2]))
	}
	return out
}

// removeNewCgroups removes, deepest first, the cgroups the containers left
// that were not there before. rmdir only succeeds on an empty cgroup, so a
// cgroup still holding a process is left alone.
func removeNewCgroups(before map[string]bool) {
	for dir := range cgroupsSnapshot() {
		if before[dir] {
			continue
		}
		var dirs []string
		_ = filepath.WalkDir(dir, func(p string, d os.DirEntry, err error) error {
			if err == nil && d.IsDir() {
				dirs = append(dirs, p)
			}
			return nil
		})
		for i := len(dirs) - 1; i >= 0; i-- {
			if err := os.Remove(dirs[i]); err != nil {
				fmt.Fprintf(os.Stderr, "systemtest: cgroup %s left behind: %v\n", dirs[i], err)
			}
		}
	}
}

// has reports whether the packaged patchd knows a subcommand, so scenarios
// that need a part still being built say so instead of failing.
func has(c *container, subcommand string) bool {
	_, err := c.execOut("patchd", subcommand, "--help")
	return err == nil
}

// notYet skips a scenario whose part has not landed yet, with the reason.
func notYet(t *testing.T, why string) {
	t.Helper()
	t.Skipf("not yet: %s", why)
}
