package control

import (
	"context"
	"encoding/json"
	"log/slog"
	"net/http"
	"net/http/httptest"
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

	srv := NewServer(filepath.Join(socketDir(t), "s"), slog.New(slog.DiscardHandler))
	srv.Mux.HandleFunc("POST /v1/fail", func(w http.ResponseWriter, _ *http.Request) {
		WriteError(w, http.StatusBadRequest, "bad request body: unexpected EOF")
	})
	srv.Mux.HandleFunc("GET /v1/plain", func(w http.ResponseWriter, _ *http.Request) {
		http.Error(w, "not json", http.StatusInternalServerError)
	})
	start(t, srv)

	ctx := context.Background()
	c := controlclient.New(srv.Path, 5*time.Second)
	err := c.Do(ctx, http.MethodPost, "/v1/fail", struct{}{}, nil)
	if err == nil || err.Error() != "patchd: bad request body: unexpected EOF" {
		t.Fatalf("client error %v, want the daemon's message", err)
	}
	// An answer that is not an error reply still says what came back.
	if err := c.Do(ctx, http.MethodGet, "/v1/plain", nil, nil); err == nil || !strings.Contains(err.Error(), "500") || !strings.Contains(err.Error(), "not json") {
		t.Fatalf("plain-text error: %v", err)
	}
}
