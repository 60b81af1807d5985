package control

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/patchd/patchd/agent/controlclient"
)

// Error answers carry exactly one key, "error", and the client turns them
// into an error with the daemon's message.
func TestErrorReplyKeyAndClient(t *testing.T) {
	rec := httptest.NewRecorder()
	WriteError(rec, http.StatusConflict, "a hook failed")
	var raw map[string]any
	if err := json.Unmarshal(rec.Body.Bytes(), &raw); err != nil {
		t.Fatal(err)
	}
	if len(raw) != 1 || raw["error"] != "a hook failed" {
		t.Fatalf("error reply %s, want {\"error\": \"a hook failed\"}", rec.Body.String())
	}
	if rec.Code != http.StatusConflict || rec.Header().Get("Content-Type") != "application/json" {
		t.Fatalf("status %d, content type %q", rec.Code, rec.Header().Get("Content-Type"))
	}

	dir, err := os.MkdirTemp("", "pdc") // unix socket paths are short
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	srv := NewServer(filepath.Join(dir, "s"), slog.New(slog.NewTextHandler(io.Discard, nil)))
	srv.Mux.HandleFunc("POST /v1/fail", func(w http.ResponseWriter, _ *http.Request) {
		WriteError(w, http.StatusBadRequest, "bad request body: unexpected EOF")
	})
	srv.Mux.HandleFunc("GET /v1/plain", func(w http.ResponseWriter, _ *http.Request) {
		http.Error(w, "not json", http.StatusInternalServerError)
	})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
	})

	c := controlclient.New(srv.Path, 5*time.Second)
	// The socket appears once Run listens: retry only while it is absent.
	for {
		err = c.Do(ctx, http.MethodPost, "/v1/fail", struct{}{}, nil)
		if !errors.Is(err, controlclient.ErrUnreachable) {
			break
		}
		select {
		case err := <-done:
			t.Fatalf("Run returned at start: %v", err)
		default:
		}
	}
	if err == nil || err.Error() != "patchd: bad request body: unexpected EOF" {
		t.Fatalf("client error %v, want the daemon's message", err)
	}
	// An answer that is not an error reply still says what came back.
	if err := c.Do(ctx, http.MethodGet, "/v1/plain", nil, nil); err == nil || !strings.Contains(err.Error(), "500") || !strings.Contains(err.Error(), "not json") {
		t.Fatalf("plain-text error: %v", err)
	}
}
