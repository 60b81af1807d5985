// Package control is the local control channel between the patchd CLI and
// the daemon: HTTP over a unix socket that only root can open (mode 0600 in a
// 0755 directory). Parts of the daemon register their handlers on the
// server's mux; the CLI uses Client.
package control

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"time"
)

// Server serves the control API on a unix socket.
type Server struct {
	Path   string
	Mux    *http.ServeMux
	Logger *slog.Logger
}

// NewServer returns a server for the socket at path.
func NewServer(path string, logger *slog.Logger) *Server {
	return &Server{Path: path, Mux: http.NewServeMux(), Logger: logger}
}

// Run listens until ctx is done. A stale socket left by a killed patchd is
// replaced; a live one (another patchd running) is an error.
func (s *Server) Run(ctx context.Context) error {
	if err := os.MkdirAll(filepath.Dir(s.Path), 0o755); err != nil {
		return fmt.Errorf("control socket %s: %w", s.Path, err)
	}
	if c, err := net.DialTimeout("unix", s.Path, time.Second); err == nil {
		c.Close()
		return fmt.Errorf("control socket %s: another patchd is already listening there; stop it first", s.Path)
	}
	_ = os.Remove(s.Path)
	l, err := net.Listen("unix", s.Path)
	if err != nil {
		return fmt.Errorf("control socket %s: %w", s.Path, err)
	}
	if err := os.Chmod(s.Path, 0o600); err != nil {
		l.Close()
		return fmt.Errorf("control socket %s: %w", s.Path, err)
	}
	srv := &http.Server{Handler: s.Mux, ReadHeaderTimeout: 10 * time.Second}
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

// WriteJSON answers a control request with v as JSON.
func WriteJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

// ErrorReply is the body of every error answer of the API: one key,
// "error", whatever the endpoint, so that clients (and curl users) read
// failures one way.
type ErrorReply struct {
	Error string `json:"error"`
}

// WriteError answers a control request with status and {"error": msg}.
func WriteError(w http.ResponseWriter, status int, msg string) {
	WriteJSON(w, status, ErrorReply{Error: msg})
}

// Client talks to the daemon's control socket.
type Client struct {
	Path string
	http *http.Client
}

// NewClient returns a client for the socket at path. timeout bounds a whole
// request; gate requests that wait for hooks pass a long one.
func NewClient(path string, timeout time.Duration) *Client {
	return &Client{Path: path, http: &http.Client{
		Timeout: timeout,
		Transport: &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "unix", path)
		}},
	}}
}

// ErrUnreachable wraps failures to reach the daemon at all.
var ErrUnreachable = errors.New("patchd daemon unreachable")

// Do sends method to the API path with body in (may be nil) and decodes a
// JSON answer into out (may be nil). A non-2xx answer is an error carrying
// the daemon's message.
func (c *Client) Do(ctx context.Context, method, path string, in, out any) error {
	var body io.Reader
	if in != nil {
		b, err := json.Marshal(in)
		if err != nil {
			return err
		}
		body = strings.NewReader(string(b))
	}
	req, err := http.NewRequestWithContext(ctx, method, "http://patchd"+path, body)
	if err != nil {
		return err
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return fmt.Errorf("%w at %s: %v (is patchd running? systemctl status patchd)", ErrUnreachable, c.Path, err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, 16<<20))
	if err != nil {
		return fmt.Errorf("reading answer from %s: %w", c.Path, err)
	}
	if resp.StatusCode/100 != 2 {
		var e ErrorReply
		if json.Unmarshal(data, &e) == nil && e.Error != "" {
			return fmt.Errorf("patchd: %s", e.Error)
		}
		return fmt.Errorf("patchd: %s: %s", resp.Status, strings.TrimSpace(string(data)))
	}
	if out != nil {
		if err := json.Unmarshal(data, out); err != nil {
			return fmt.Errorf("decoding answer from %s: %w", c.Path, err)
		}
	}
	return nil
}
