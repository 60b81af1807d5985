package controlclient_test

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/patchd/patchd/agent/control"
	"github.com/patchd/patchd/agent/controlclient"
)

// socketDir is a short temporary directory: unix socket paths are short.
func socketDir(t *testing.T) string {
	t.Helper()
	dir, err := os.MkdirTemp("", "pcc")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	return dir
}

// startDaemonServer runs the daemon's own control server with the given
// handlers and returns a client for it, once the socket answers.
func startDaemonServer(t *testing.T, timeout time.Duration, routes map[string]http.HandlerFunc) *controlclient.Client {
	t.Helper()
	srv := control.NewServer(filepath.Join(socketDir(t), "s"), slog.New(slog.DiscardHandler))
	ready := make(chan struct{})
	srv.Mux.HandleFunc("GET /v1/ready", func(w http.ResponseWriter, _ *http.Request) { control.WriteJSON(w, 200, "ok") })
	for pattern, h := range routes {
		srv.Mux.HandleFunc(pattern, h)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
	})
	c := controlclient.New(srv.Path, timeout)
	go func() {
		defer close(ready)
		for ctx.Err() == nil {
			if err := c.Do(ctx, "GET", "/v1/ready", nil, nil); !errors.Is(err, controlclient.ErrUnreachable) {
				return
			}
		}
	}()
	select {
	case <-ready:
	case err := <-done:
		t.Fatalf("Run returned at start: %v", err)
	}
	return c
}

type gateReq struct {
	Phase  string `json:"phase"`
	Result string `json:"result"`
}

func TestAgainstTheDaemonServer(t *testing.T) {
	big := strings.Repeat("0123456789abcdef", 1<<16) // 1 MiB: no Content-Length, ends at close
	hang := make(chan struct{})
	entered := make(chan struct{}, 1)
	t.Cleanup(func() { close(hang) })
	c := startDaemonServer(t, 5*time.Second, map[string]http.HandlerFunc{
		"POST /v1/gate": func(w http.ResponseWriter, r *http.Request) {
			var in gateReq
			if r.Header.Get("Content-Type") != "application/json" || json.NewDecoder(r.Body).Decode(&in) != nil {
				control.WriteError(w, http.StatusBadRequest, "bad request body")
				return
			}
			control.WriteJSON(w, http.StatusOK, in)
		},
		"GET /v1/big": func(w http.ResponseWriter, _ *http.Request) { control.WriteJSON(w, http.StatusOK, big) },
		"GET /v1/refuse": func(w http.ResponseWriter, _ *http.Request) {
			control.WriteError(w, http.StatusConflict, "a pre-patch hook failed")
		},
		"GET /v1/busy": func(w http.ResponseWriter, _ *http.Request) {
			control.WriteError(w, controlclient.StatusUnavailable, "patchd is stopping")
		},
		"GET /v1/plain": func(w http.ResponseWriter, _ *http.Request) {
			http.Error(w, "not json", http.StatusInternalServerError)
		},
		"GET /v1/hang": func(w http.ResponseWriter, r *http.Request) {
			select {
			case entered <- struct{}{}:
			default:
			}
			select {
			case <-hang:
			case <-r.Context().Done():
			}
		},
	})
	ctx := context.Background()

	var out gateReq
	if err := c.Do(ctx, "POST", "/v1/gate", gateReq{"post-patch", "success"}, &out); err != nil || out != (gateReq{"post-patch", "success"}) {
		t.Errorf("POST round trip: %+v, %v", out, err)
	}
	var got string
	if err := c.Do(ctx, "GET", "/v1/big", nil, &got); err != nil || got != big {
		t.Errorf("1 MiB answer: %d bytes, %v", len(got), err)
	}
	var api *controlclient.APIError
	if err := c.Do(ctx, "GET", "/v1/refuse", nil, nil); !errors.As(err, &api) || api.Status != 409 || err.Error() != "patchd: a pre-patch hook failed" {
		t.Errorf("refusal: %v", err)
	}
	if err := c.Do(ctx, "GET", "/v1/busy", nil, nil); !errors.As(err, &api) || api.Status != controlclient.StatusUnavailable {
		t.Errorf("unavailable: %v", err)
	}
	if err := c.Do(ctx, "GET", "/v1/plain", nil, nil); !errors.As(err, &api) || api.Message != "500 Internal Server Error: not json" {
		t.Errorf("plain-text error: %v", err)
	}
	if err := c.Do(ctx, "GET", "/v1/nothing-here", nil, nil); !errors.As(err, &api) || api.Status != 404 {
		t.Errorf("unknown path: %v", err)
	}
	if err := c.Do(ctx, "GET", "/v1/gate", nil, nil); !errors.As(err, &api) || api.Status != 405 {
		t.Errorf("wrong method: %v", err)
	}
	if err := c.Do(ctx, "GET", "/v1/big", nil, &out); err == nil || errors.Is(err, controlclient.ErrUnreachable) {
		t.Errorf("an answer of the wrong shape must be a decoding error: %v", err)
	}

	// The client's timeout and the caller's context both end a request
	// the daemon does not answer.
	short := controlclient.New(c.Path, 100*time.Millisecond)
	start := time.Now()
	if err := short.Do(ctx, "GET", "/v1/hang", nil, nil); !errors.Is(err, controlclient.ErrUnreachable) || time.Since(start) > 5*time.Second {
		t.Errorf("timeout: %v after %s", err, time.Since(start))
	}
	<-entered
	cctx, cancel := context.WithCancel(ctx)
	go func() {
		// Cancel once the request is in the daemon's hands.
		<-entered
		cancel()
	}()
	if err := c.Do(cctx, "GET", "/v1/hang", nil, nil); !errors.Is(err, controlclient.ErrUnreachable) || cctx.Err() == nil {
		t.Errorf("cancel: %v", err)
	}
}

func TestNoDaemon(t *testing.T) {
	c := controlclient.New(filepath.Join(socketDir(t), "absent"), time.Second)
	err := c.Do(context.Background(), "GET", "/v1/status", nil, nil)
	if !errors.Is(err, controlclient.ErrUnreachable) || !strings.Contains(err.Error(), "is patchd running?") {
		t.Errorf("%v", err)
	}
}

// fakeDaemon answers every connection with the raw bytes of answer after
// reading the request's head.
func fakeDaemon(t *testing.T, answer string) string {
	t.Helper()
	path := filepath.Join(socketDir(t), "s")
	l, err := net.Listen("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			conn, err := l.Accept()
			if err != nil {
				return
			}
			r := bufio.NewReader(conn)
			for {
				line, err := r.ReadString('\n')
				if err != nil || line == "\r\n" {
					break
				}
			}
			_, _ = io.WriteString(conn, answer)
			conn.Close()
		}
	}()
	t.Cleanup(func() { l.Close(); <-done })
	return path
}

func TestBrokenAnswers(t *testing.T) {
	for name, tc := range map[string]struct{ answer, want string }{
		"not HTTP":         {"SSH-2.0-OpenSSH\r\n\r\n", "not an HTTP answer"},
		"empty":            {"", "status line"},
		"cut in headers":   {"HTTP/1.0 200 OK\r\nContent-Length: 2\r\n", "headers"},
		"cut in body":      {"HTTP/1.0 200 OK\r\nContent-Length: 100\r\n\r\n{}", "cut short"},
		"bad length":       {"HTTP/1.0 200 OK\r\nContent-Length: -1\r\n\r\n{}", "Content-Length"},
		"two lengths":      {"HTTP/1.0 200 OK\r\nContent-Length: 2\r\nContent-Length: 3\r\n\r\n{}", "Content-Length"},
		"chunked":          {"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\n{}\r\n0\r\n\r\n", "Transfer-Encoding"},
		"huge length":      {"HTTP/1.0 200 OK\r\nContent-Length: 99999999999\r\n\r\n", "limit"},
		"header no colon":  {"HTTP/1.0 200 OK\r\nnonsense\r\n\r\n", "malformed header"},
		"endless headers":  {"HTTP/1.0 200 OK\r\n" + strings.Repeat("X-A: "+strings.Repeat("a", 1000)+"\r\n", 70) + "\r\n", "size limit"},
		"three-digit code": {"HTTP/1.0 20 OK\r\n\r\n", "not an HTTP answer"},
	} {
		t.Run(name, func(t *testing.T) {
			c := controlclient.New(fakeDaemon(t, tc.answer), 5*time.Second)
			err := c.Do(context.Background(), "GET", "/v1/status", nil, nil)
			if !errors.Is(err, controlclient.ErrUnreachable) || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("error %v, want ErrUnreachable saying %q", err, tc.want)
			}
		})
	}
	// A body without a length ends at the close.
	c := controlclient.New(fakeDaemon(t, "HTTP/1.0 200 OK\r\nContent-Type: application/json\r\n\r\n{\"a\":1}"), 5*time.Second)
	var out map[string]int
	if err := c.Do(context.Background(), "GET", "/v1/status", nil, &out); err != nil || out["a"] != 1 {
		t.Errorf("close-delimited body: %v %v", out, err)
	}
}

func TestBadRequestIsRefusedBeforeSending(t *testing.T) {
	c := controlclient.New(fakeDaemon(t, "HTTP/1.0 200 OK\r\n\r\n"), time.Second)
	for _, tc := range [][2]string{{"get", "/v1/status"}, {"GET", "v1/status"}, {"GET", "/v1/status HTTP/1.1\r\nX: y"}} {
		if err := c.Do(context.Background(), tc[0], tc[1], nil, nil); err == nil || !strings.Contains(err.Error(), "bad request") {
			t.Errorf("%q %q: %v", tc[0], tc[1], err)
		}
	}
}
