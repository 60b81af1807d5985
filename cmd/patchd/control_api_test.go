package main

import (
	"context"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"
)

// Every error answer of the control API, whichever part serves it, is
// {"error": "..."}: one key name for clients and for curl --unix-socket.
func TestControlAPIErrorsUseOneKey(t *testing.T) {
	tr := newTestTree(t)
	startDaemon(t, tr, "--web.listen-address=")
	client := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "unix", tr.Socket)
		}}}
	for _, c := range []struct {
		path, body string
		status     int
		msg        string
	}{
		{"/v1/gate", "{", http.StatusBadRequest, "bad gate request"},
		{"/v1/gate", `{"phase": "post-patch"}`, http.StatusConflict, "no open patch cycle"},
		{"/v1/agent/restart", "{", http.StatusBadRequest, "bad request body"},
	} {
		resp, err := client.Post("http://patchd"+c.path, "application/json", strings.NewReader(c.body))
		if err != nil {
			t.Fatal(err)
		}
		data, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		if err != nil {
			t.Fatal(err)
		}
		var reply map[string]any
		if err := json.Unmarshal(data, &reply); err != nil {
			t.Fatalf("POST %s %s: not JSON: %s", c.path, c.body, data)
		}
		msg, _ := reply["error"].(string)
		if resp.StatusCode != c.status || len(reply) != 1 || !strings.Contains(msg, c.msg) {
			t.Errorf("POST %s %s: %d %s; want %d and only {\"error\": \"%s…\"}", c.path, c.body, resp.StatusCode, data, c.status, c.msg)
		}
	}
}
