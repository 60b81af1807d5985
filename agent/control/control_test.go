package control

import (
	"bufio"
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/patchd/patchd/agent/controlclient"
)

// socketDir returns a short directory (unix socket paths are limited to
// ~108 bytes) that every user may traverse.
func socketDir(t *testing.T) string {
	t.Helper()
	dir, err := os.MkdirTemp("", "pdctl")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	return dir
}

// start runs a server on path until the test ends and waits until it
// answers.
func start(t *testing.T, s *Server) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	errc := make(chan error, 1)
	go func() { errc <- s.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-errc; err != nil {
			t.Errorf("Run: %v", err)
		}
	})
	waitListening(t, s.Path, errc)
}

func waitListening(t *testing.T, path string, errc <-chan error) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		select {
		case err := <-errc:
			t.Fatalf("Run ended early: %v", err)
		default:
		}
		if c, err := net.Dial("unix", path); err == nil {
			c.Close()
			return
		}
	}
	t.Fatalf("control socket %s never answered", path)
}

func TestRefusesWhatIsNotASocket(t *testing.T) {
	for _, tc := range []struct {
		name string
		make func(path string) error
		want string
	}{
		{"regular file", func(p string) error { return os.WriteFile(p, []byte("precious\n"), 0o644) }, "regular file"},
		{"empty directory", func(p string) error { return os.Mkdir(p, 0o755) }, "directory"},
		{"symlink", func(p string) error { return os.Symlink("/etc/hostname", p) }, "symbolic link"},
		{"fifo", func(p string) error { return syscall.Mkfifo(p, 0o600) }, "named pipe"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			path := filepath.Join(socketDir(t), "patchd.sock")
			if err := tc.make(path); err != nil {
				t.Fatal(err)
			}
			before, err := os.Lstat(path)
			if err != nil {
				t.Fatal(err)
			}
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			err = NewServer(path, nil).Run(ctx)
			if err == nil || !strings.Contains(err.Error(), "not a socket") || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("Run = %v, want a refusal naming a %s", err, tc.want)
			}
			after, err := os.Lstat(path)
			if err != nil {
				t.Fatalf("the %s at the socket path is gone: %v", tc.name, err)
			}
			if !os.SameFile(before, after) {
				t.Fatalf("the %s at the socket path was replaced", tc.name)
			}
		})
	}
}

func TestReplacesStaleSocket(t *testing.T) {
	path := filepath.Join(socketDir(t), "patchd.sock")
	l, err := net.ListenUnix("unix", &net.UnixAddr{Name: path, Net: "unix"})
	if err != nil {
		t.Fatal(err)
	}
	l.SetUnlinkOnClose(false)
	l.Close() // what a killed patchd leaves
	s := NewServer(path, nil)
	s.Mux.HandleFunc("GET /v1/ping", func(w http.ResponseWriter, _ *http.Request) { WriteJSON(w, 200, "pong") })
	start(t, s)
	var out string
	if err := controlclient.New(path, 5*time.Second).Do(context.Background(), "GET", "/v1/ping", nil, &out); err != nil || out != "pong" {
		t.Fatalf("Do = %q, %v", out, err)
	}
	fi, err := os.Lstat(path)
	if err != nil {
		t.Fatal(err)
	}
	if perm := fi.Mode().Perm(); perm != 0o600 {
		t.Fatalf("socket mode %o, want 0600", perm)
	}
	if entries, _ := os.ReadDir(filepath.Dir(path)); len(entries) != 1 {
		t.Fatalf("socket directory holds %d entries, want only the socket (the private bind directory must be gone)", len(entries))
	}
}

func TestRefusesLiveSocket(t *testing.T) {
	path := filepath.Join(socketDir(t), "patchd.sock")
	start(t, NewServer(path, nil))
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := NewServer(path, nil).Run(ctx); err == nil || !strings.Contains(err.Error(), "already listening") {
		t.Fatalf("second Run = %v, want 'already listening'", err)
	}
}

// An idle keep-alive connection is closed by the server: a client holding
// thousands of them must not hold patchd's descriptors forever.
func TestIdleConnectionIsClosed(t *testing.T) {
	path := filepath.Join(socketDir(t), "patchd.sock")
	s := NewServer(path, nil)
	s.IdleTimeout = 50 * time.Millisecond
	s.Mux.HandleFunc("GET /v1/ping", func(w http.ResponseWriter, _ *http.Request) { WriteJSON(w, 200, "pong") })
	start(t, s)
	c, err := net.Dial("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := io.WriteString(c, "GET /v1/ping HTTP/1.1\r\nHost: patchd\r\n\r\n"); err != nil {
		t.Fatal(err)
	}
	br := bufio.NewReader(c)
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatal(err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if resp.Close {
		t.Fatal("server closed the connection after the answer; the test needs a kept-alive one")
	}
	// The bound is far above the idle timeout; the read ends when the
	// server closes the connection.
	c.SetReadDeadline(time.Now().Add(20 * time.Second))
	if _, err := br.ReadByte(); !errors.Is(err, io.EOF) {
		t.Fatalf("read on an idle connection = %v, want EOF (the server closing it)", err)
	}
}

func TestDefaultIdleTimeoutIsSet(t *testing.T) {
	if DefaultIdleTimeout <= 0 || DefaultIdleTimeout > 5*time.Minute {
		t.Fatalf("DefaultIdleTimeout = %v", DefaultIdleTimeout)
	}
}

// clientEnv makes the test binary a client that dials the socket until it
// gets in (exit 3) or is killed.
const clientEnv = "PATCHD_CONTROL_TEST_CLIENT"

func TestMain(m *testing.M) {
	if path := os.Getenv(clientEnv); path != "" {
		os.Stdout.WriteString("ready\n")
		for {
			if c, err := net.Dial("unix", path); err == nil {
				c.Close()
				os.Stdout.WriteString("connected\n")
				os.Exit(3)
			}
		}
	}
	os.Exit(m.Run())
}

// Started under umask 000, the socket must never be reachable by another
// user, not even between bind and chmod. An unprivileged client dials the
// path without pause while the server starts and stops again and again.
func TestSocketNeverOpenToOtherUsers(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root to run the client as another user")
	}
	old := syscall.Umask(0)
	defer syscall.Umask(old)

	dir := socketDir(t)
	path := filepath.Join(dir, "patchd.sock")
	// The client is this test binary, copied where the other user can run it.
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	bin := filepath.Join(dir, "client")
	data, err := os.ReadFile(self)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(bin, data, 0o755); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin)
	cmd.Env = append(os.Environ(), clientEnv+"="+path)
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: 65534, Gid: 65534}}
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1) // closed by the client's end
	lines := bufio.NewScanner(out)
	if !lines.Scan() || lines.Text() != "ready" {
		t.Fatalf("client did not start: %q", lines.Text())
	}
	go func() {
		for lines.Scan() {
		}
		exited <- cmd.Wait()
		close(exited)
	}()
	defer func() {
		cmd.Process.Kill()
		for range exited {
		}
	}()

	for i := 0; i < 60; i++ {
		ctx, cancel := context.WithCancel(context.Background())
		errc := make(chan error, 1)
		go func() { errc <- NewServer(path, nil).Run(ctx) }()
		waitListening(t, path, errc)
		fi, err := os.Lstat(path)
		if err != nil {
			t.Fatal(err)
		}
		if perm := fi.Mode().Perm(); perm != 0o600 {
			t.Fatalf("start %d: socket mode %o, want 0600", i, perm)
		}
		cancel()
		if err := <-errc; err != nil {
			t.Fatal(err)
		}
		select {
		case err := <-exited:
			t.Fatalf("start %d: another user connected to the control socket (client: %v)", i, err)
		default:
		}
	}
}

// A socket directory others can write is refused: they could swap the
// socket for their own. A root-owned sticky one (/tmp) is fine.
func TestRefusesDirectoryWritableByOthers(t *testing.T) {
	dir := socketDir(t)
	if err := os.Chmod(dir, 0o777); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	err := NewServer(filepath.Join(dir, "patchd.sock"), nil).Run(ctx)
	if err == nil || !strings.Contains(err.Error(), "writable by group or others") {
		t.Fatalf("Run in a 0777 directory = %v, want a refusal", err)
	}
	if os.Geteuid() == 0 {
		if err := os.Chmod(dir, 0o777|os.ModeSticky); err != nil {
			t.Fatal(err)
		}
		start(t, NewServer(filepath.Join(dir, "patchd.sock"), nil))
	}
}
