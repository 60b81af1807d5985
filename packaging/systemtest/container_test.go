package systemtest

// A Debian bookworm root booted by a real systemd in systemd-nspawn. The
// container shares the host's network (no --private-network), so its patchd
// answers on the host's loopback and reaches an IMDS server started there;
// its files are a plain host directory, so the test writes the agent's state
// files into it directly, as the agent would.

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/patchd/patchd/packaging/systemtest/aptsources"
)

// nspawnRebootStatus is systemd-nspawn's exit status when the container
// asked for a reboot (systemctl reboot inside): the caller boots it again.
const nspawnRebootStatus = 133

// rootfsTar returns the cached tarball of a minimal bookworm with systemd,
// building it with debootstrap on first use (~1-4 min). The cache lives in
// the build directory so `make clean` drops it.
func rootfsTar(buildDir string) (string, error) {
	dir := filepath.Join(buildDir, "e2e")
	tarball := filepath.Join(dir, "bookworm-minbase.tar")
	if _, err := os.Stat(tarball); err == nil {
		return tarball, nil
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", err
	}
	root, err := os.MkdirTemp(dir, "debootstrap-")
	if err != nil {
		return "", err
	}
	defer os.RemoveAll(root)
	// MkdirTemp makes it 0700 and tar keeps that for "./": a root only
	// root can enter, where dbus (user messagebus) never starts.
	if err := os.Chmod(root, 0o755); err != nil {
		return "", err
	}
	mirror, err := debianMirror()
	if err != nil {
		return "", err
	}
	fmt.Fprintf(os.Stderr, "systemtest: building %s with debootstrap from %s (once; cached)\n", tarball, mirror)
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Minute)
	defer cancel()
	out, err := exec.CommandContext(ctx, "debootstrap", "--variant=minbase",
		"--include=systemd,systemd-sysv,dbus", "bookworm", root, mirror).CombinedOutput()
	if err != nil {
		return "", fmt.Errorf("debootstrap bookworm into %s: %w\n%s", root, err, tail(out, 3000))
	}
	// The downloaded .debs are of no use inside the tests; dropping them
	// makes every extraction faster.
	debs, _ := filepath.Glob(filepath.Join(root, "var/cache/apt/archives/*.deb"))
	for _, d := range debs {
		os.Remove(d)
	}
	tmp := tarball + ".tmp"
	if out, err := exec.Command("tar", "-C", root, "-cf", tmp, ".").CombinedOutput(); err != nil {
		return "", fmt.Errorf("tar %s: %w\n%s", tmp, err, out)
	}
	return tarball, os.Rename(tmp, tarball)
}

// debianMirror is where debootstrap fetches bookworm from: PATCHD_E2E_MIRROR,
// else the Debian archive this host's apt is configured with (a local
// mirror or proxy on a build machine). The repository names no download
// host of its own.
func debianMirror() (string, error) {
	if m := os.Getenv("PATCHD_E2E_MIRROR"); m != "" {
		return m, nil
	}
	return aptsources.DebianArchive("/etc/apt", "bookworm")
}

// container is one booted root directory.
type container struct {
	t    *testing.T
	Dir  string
	name string
	log  string

	nspawn *exec.Cmd
	exited chan struct{}
	status int // nspawn's exit status, valid after exited is closed
	pid    int // the container's PID 1 (systemd) as seen from the host
}

// newRoot extracts the cached root into a fresh directory for one test.
func newRoot(t *testing.T) string {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "root")
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command("tar", "-C", dir, "-xf", suite.rootfs).CombinedOutput(); err != nil {
		t.Fatalf("extracting %s: %v\n%s", suite.rootfs, err, out)
	}
	// The root's own mode comes from the tarball's "./"; / must be 0755.
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	// The container shares the host's network: a patchd running on the
	// packaged configuration must not poll whatever answers at
	// 169.254.169.254 here. A refused loopback port is "IMDS unknown";
	// a test that wants an IMDS configures imds.endpoint, which wins.
	dropIn := filepath.Join(dir, "etc/systemd/system/patchd.service.d")
	if err := os.MkdirAll(dropIn, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dropIn, "10-test-imds.conf"),
		[]byte("[Service]\nEnvironment=AWS_EC2_METADATA_SERVICE_ENDPOINT=http://127.0.0.1:9\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	return dir
}

// boot starts systemd in dir and waits until it has finished booting. The
// container is stopped at the end of the test.
func boot(t *testing.T, dir, name string) *container {
	t.Helper()
	c := &container{t: t, Dir: dir, name: name, log: filepath.Join(filepath.Dir(dir), name+".console")}
	t.Cleanup(c.stop)
	c.start()
	return c
}

func (c *container) start() {
	c.t.Helper()
	logf, err := os.OpenFile(c.log, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		c.t.Fatal(err)
	}
	defer logf.Close()
	// setsid: nspawn and everything below it form one session that the
	// cleanup can kill as a group if the container does not power off.
	cmd := exec.Command("systemd-nspawn", "-b", "-D", c.Dir, "--machine="+c.name,
		"--register=no", "--keep-unit", "--console=read-only")
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if err := cmd.Start(); err != nil {
		c.t.Fatalf("systemd-nspawn: %v", err)
	}
	c.nspawn, c.exited, c.pid = cmd, make(chan struct{}), 0
	go func(exited chan struct{}) {
		err := cmd.Wait()
		c.status = 0
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			c.status = ee.ExitCode()
		}
		close(exited)
	}(c.exited)

	// Generous: a boot takes 2-5 s idle, far longer on a loaded CI host.
	err = poll(3*time.Minute, func() (bool, error) {
		select {
		case <-c.exited:
			return false, fmt.Errorf("systemd-nspawn exited with %d before the container booted", c.status)
		default:
		}
		if c.pid == 0 {
			c.pid = childNamed(cmd.Process.Pid, "systemd")
			return false, nil
		}
		// is-system-running prints running or degraded once boot is over;
		// early on it cannot reach the manager yet and says so.
		out, _ := c.execOut("systemctl", "is-system-running")
		s := strings.TrimSpace(out)
		return s == "running" || s == "degraded", nil
	})
	if err != nil {
		c.t.Fatalf("booting %s: %v\nconsole:\n%s", c.Dir, err, c.console())
	}
}

// childNamed returns the pid of a child of parent whose comm is name, or 0.
func childNamed(parent int, name string) int {
	stats, _ := filepath.Glob("/proc/[0-9]*/stat")
	for _, s := range stats {
		data, err := os.ReadFile(s)
		if err != nil {
			continue
		}
		// pid (comm) state ppid ...: comm may hold spaces, so cut at the last ')'.
		str := string(data)
		open, close := strings.IndexByte(str, '('), strings.LastIndexByte(str, ')')
		if open < 0 || close < open {
			continue
		}
		fields := strings.Fields(str[close+1:])
		if len(fields) < 2 || str[open+1:close] != name {
			continue
		}
		if ppid, _ := strconv.Atoi(fields[1]); ppid == parent {
			pid, _ := strconv.Atoi(strings.TrimSpace(str[:open]))
			return pid
		}
	}
	return 0
}

func (c *container) console() string {
	data, _ := os.ReadFile(c.log)
	return tail(data, 4000)
}

// execOut runs a command inside the container and returns its combined
// output; err is non-nil on a non-zero exit.
func (c *container) execOut(args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "nsenter", append([]string{"-t", strconv.Itoa(c.pid), "-a"}, args...)...)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	// A clean environment, as a login would have; the host's would leak
	// GOFLAGS, HOME=/root of the host's user and so on.
	cmd.Env = []string{"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "LANG=C.UTF-8", "DEBIAN_FRONTEND=noninteractive"}
	err := cmd.Run()
	return out.String(), err
}

// run runs a command inside the container and fails the test if it fails.
func (c *container) run(args ...string) string {
	c.t.Helper()
	out, err := c.execOut(args...)
	if err != nil {
		c.t.Fatalf("in container: %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return out
}

// prop returns one property of a unit (systemctl show -P).
func (c *container) prop(unit, name string) string {
	out, _ := c.execOut("systemctl", "show", "-P", name, unit)
	return strings.TrimSpace(out)
}

// journal returns the unit's journal, for failure messages.
func (c *container) journal(unit string) string {
	out, _ := c.execOut("journalctl", "-u", unit, "--no-pager", "-o", "short-precise", "-n", "200")
	return out
}

// waitFor polls cond until it holds, failing the test after limit with what
// says why.
func (c *container) waitFor(limit time.Duration, what string, cond func() bool) {
	c.t.Helper()
	if err := poll(limit, func() (bool, error) { return cond(), nil }); err != nil {
		c.t.Fatalf("%s: not within %s", what, limit)
	}
}

// reboot asks the container's systemd to reboot, waits for nspawn to exit
// with the reboot status, and boots the same root again, as a host's
// firmware would.
func (c *container) reboot() {
	c.t.Helper()
	c.run("systemctl", "reboot")
	c.waitExit(2 * time.Minute)
	if c.status != nspawnRebootStatus {
		c.t.Fatalf("systemd-nspawn exited with %d after systemctl reboot, want %d\n%s", c.status, nspawnRebootStatus, c.console())
	}
	c.start()
}

// waitExit waits until nspawn has exited (a reboot or power-off started
// from inside), failing the test after limit.
func (c *container) waitExit(limit time.Duration) {
	c.t.Helper()
	select {
	case <-c.exited:
	case <-time.After(limit):
		c.t.Fatalf("container %s did not go down within %s\n%s", c.name, limit, c.console())
	}
}

// stop powers the container off, or kills its whole session when it does
// not go down in time, and waits for nspawn to exit.
func (c *container) stop() {
	if c.nspawn == nil {
		return
	}
	select {
	case <-c.exited:
		return
	default:
	}
	_, _ = c.execOut("systemctl", "poweroff", "--no-block")
	select {
	case <-c.exited:
		return
	case <-time.After(30 * time.Second):
	}
	_ = syscall.Kill(-c.nspawn.Process.Pid, syscall.SIGKILL)
	<-c.exited
}

// poll calls cond on a ticker until it returns true or an error, or limit
// passes. Bounded waiting on processes outside the test's control.
func poll(limit time.Duration, cond func() (bool, error)) error {
	deadline := time.NewTimer(limit)
	defer deadline.Stop()
	tick := time.NewTicker(250 * time.Millisecond)
	defer tick.Stop()
	for {
		ok, err := cond()
		if err != nil {
			return err
		}
		if ok {
			return nil
		}
		select {
		case <-deadline.C:
			return fmt.Errorf("timed out after %s", limit)
		case <-tick.C:
		}
	}
}

func tail(b []byte, n int) string {
	if len(b) > n {
		b = b[len(b)-n:]
	}
	return string(b)
}
