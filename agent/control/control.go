// Package control is the local control channel between the patchd CLI and
// the daemon: HTTP over a unix socket that only root can open (mode 0600
// from the moment it appears at its path, in a 0755 directory). Parts of
// the daemon register their handlers on the server's mux; the CLI uses
// package controlclient.
package control

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"syscall"
	"time"

	"github.com/patchd/patchd/agent/controlclient"
	"github.com/patchd/patchd/agent/safeopen"
)

// Server serves the control API on a unix socket.
type Server struct {
	Path   string
	Mux    *http.ServeMux
	Logger *slog.Logger
	// IdleTimeout closes idle keep-alive connections; zero means
	// DefaultIdleTimeout.
	IdleTimeout time.Duration
}

// NewServer returns a server for the socket at path.
func NewServer(path string, logger *slog.Logger) *Server {
	return &Server{Path: path, Mux: http.NewServeMux(), Logger: logger}
}

// DefaultIdleTimeout closes a keep-alive connection the CLI left idle. The
// CLI sends one request per connection; a client that keeps thousands of
// connections open must not hold patchd's file descriptors forever.
const DefaultIdleTimeout = 30 * time.Second

// Run listens until ctx is done. A stale socket left by a killed patchd is
// replaced; a live one (another patchd running) is an error, and so is
// anything that is not a socket: patchd never deletes a file or directory
// it did not make.
func (s *Server) Run(ctx context.Context) error {
	if err := os.MkdirAll(filepath.Dir(s.Path), 0o755); err != nil {
		return fmt.Errorf("control socket %s: %w", s.Path, err)
	}
	if err := checkDir(filepath.Dir(s.Path)); err != nil {
		return fmt.Errorf("control socket %s: %w", s.Path, err)
	}
	if err := s.checkStale(); err != nil {
		return err
	}
	l, err := listenPrivate(s.Path)
	if err != nil {
		return fmt.Errorf("control socket %s: %w", s.Path, err)
	}
	idle := s.IdleTimeout
	if idle <= 0 {
		idle = DefaultIdleTimeout
	}
	srv := &http.Server{Handler: s.Mux, ReadHeaderTimeout: 10 * time.Second, IdleTimeout: idle}
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(l) }()
	select {
	case <-ctx.Done():
		sctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		_ = srv.Shutdown(sctx)
		<-errc
		_ = os.Remove(s.Path)
		return nil
	case err := <-errc:
		return fmt.Errorf("control socket %s: %w", s.Path, err)
	}
}

// checkDir refuses a socket directory where another user could rename the
// socket away and put their own in its place (the CLI, run as root, would
// then talk to them): it must be owned by root or patchd's user and not
// writable by others, unless it is a root-owned sticky directory such as
// /tmp, where nobody can replace another user's entry.
func checkDir(dir string) error {
	fi, err := os.Stat(dir)
	if err != nil {
		return err
	}
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok {
		return nil
	}
	uid := int(st.Uid)
	if uid == 0 && fi.Mode()&fs.ModeSticky != 0 {
		return nil
	}
	if uid != 0 && uid != os.Geteuid() {
		return fmt.Errorf("directory %s is owned by uid %d, not root or patchd's user; use a directory only root can write (the default is /run/patchd)", dir, uid)
	}
	if fi.Mode().Perm()&0o022 != 0 {
		return fmt.Errorf("directory %s is writable by group or others, who could replace the socket; use a directory only root can write (the default is /run/patchd)", dir)
	}
	return nil
}

// checkStale makes the socket path free: nothing there, or a socket nobody
// listens on (left by a killed patchd), which is removed.
func (s *Server) checkStale() error {
	fi, err := os.Lstat(s.Path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("control socket %s: %w", s.Path, err)
	}
	if fi.Mode().Type() != fs.ModeSocket {
		return fmt.Errorf("control socket %s: a %s is there, not a socket; patchd replaces only a stale socket: "+
			"move it away or set control.socket (--control.socket) to another path", s.Path, safeopen.Kind(fi.Mode()))
	}
	if c, err := net.DialTimeout("unix", s.Path, time.Second); err == nil {
		c.Close()
		return fmt.Errorf("control socket %s: another patchd is already listening there; stop it first", s.Path)
	}
	if err := os.Remove(s.Path); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("control socket %s: removing the stale socket: %w", s.Path, err)
	}
	return nil
}

// listenPrivate binds the socket where nobody else can reach it, a fresh
// 0700 directory beside path, makes it 0600 there and only then renames it
// to path. bind(2) creates the file with the process umask, so binding at
// path directly would leave it open to every local user (umask 000) until
// the chmod; and umask is process-wide, so changing it around bind would
// race every other goroutine that creates files.
func listenPrivate(path string) (*net.UnixListener, error) {
	dir, err := os.MkdirTemp(filepath.Dir(path), ".ctl-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(dir)
	if err := os.Chmod(dir, 0o700); err != nil {
		return nil, err
	}
	tmp := filepath.Join(dir, "s")
	l, err := net.ListenUnix("unix", &net.UnixAddr{Name: tmp, Net: "unix"})
	if err != nil {
		return nil, err
	}
	// The listener's own name is the temporary one; closing must not
	// unlink whatever is there by then.
	l.SetUnlinkOnClose(false)
	if err := os.Chmod(tmp, 0o600); err != nil {
		l.Close()
		return nil, err
	}
	if err := os.Rename(tmp, path); err != nil {
		l.Close()
		return nil, err
	}
	return l, nil
}

// WriteJSON answers a control request with v as JSON.
func WriteJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

// ErrorReply is the body of every error answer of the API (one key,
// "error"); its client reads it too.
type ErrorReply = controlclient.ErrorReply

// WriteError answers a control request with status and {"error": msg}.
func WriteError(w http.ResponseWriter, status int, msg string) {
	WriteJSON(w, status, ErrorReply{Error: msg})
}
