package imds

import (
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"sync"

	"github.com/patchd/patchd/agent/safeopen"
)

// Error kinds of patchd_imds_errors_total. The set is fixed so that the
// metric's labels stay bounded and every kind shows a zero from the start.
const (
	KindTimeout      = "timeout"
	KindUnauthorized = "unauthorized"
	KindNotFound     = "not_found"
	KindThrottled    = "throttled"
	KindServerError  = "server_error"
	KindBadResponse  = "bad_response"
	KindConnection   = "connection"
)

// Kinds lists every error kind.
var Kinds = []string{KindTimeout, KindUnauthorized, KindNotFound, KindThrottled, KindServerError, KindBadResponse, KindConnection}

// Error is a failed IMDS read, with its kind.
type Error struct {
	Kind string
	Path string
	Err  error
}

func (e *Error) Error() string { return "IMDS " + e.Path + ": " + e.Kind + ": " + e.Err.Error() }
func (e *Error) Unwrap() error { return e.Err }

// recorder keeps the outcome of the last HTTP exchange of one operation.
// The SDK wraps some failures (a 401 after its token refresh, a token
// request that failed) in error types without Unwrap, so the status code
// cannot always be recovered from the error chain; the transport can.
type recorder struct {
	mu     sync.Mutex
	status int
	err    error
}

func (r *recorder) set(status int, err error) {
	r.mu.Lock()
	r.status, r.err = status, err
	r.mu.Unlock()
}

func (r *recorder) get() (int, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.status, r.err
}

type recorderKey struct{}

func withRecorder(ctx context.Context, r *recorder) context.Context {
	return context.WithValue(ctx, recorderKey{}, r)
}

// MaxAnswerSize bounds one IMDS answer. The largest patchd reads (the
// credentials document) is under 2 KiB.
const MaxAnswerSize = 1 << 20

type limitedBody struct {
	io.Reader
	io.Closer
}

// recordingClient is the SDK's HTTP client: it records each exchange in the
// request's recorder, including errors that happen while the body is read
// (a slow body times out there, not in Do).
type recordingClient struct{ c *http.Client }

func (rc recordingClient) Do(req *http.Request) (*http.Response, error) {
	rec, _ := req.Context().Value(recorderKey{}).(*recorder)
	resp, err := rc.c.Do(req)
	if err == nil {
		// The SDK reads whole answers into memory; an endpoint that
		// streams without end must not fill it before the timeout.
		resp.Body = limitedBody{
			Reader: safeopen.LimitReader(resp.Body, MaxAnswerSize, "IMDS answer to "+req.URL.Path),
			Closer: resp.Body,
		}
	}
	if rec == nil {
		return resp, err
	}
	if err != nil {
		rec.set(0, err)
		return resp, err
	}
	rec.set(resp.StatusCode, nil)
	resp.Body = &recordingBody{ReadCloser: resp.Body, rec: rec, status: resp.StatusCode}
	return resp, nil
}

type recordingBody struct {
	io.ReadCloser
	rec    *recorder
	status int
}

func (b *recordingBody) Read(p []byte) (int, error) {
	n, err := b.ReadCloser.Read(p)
	if err != nil && err != io.EOF {
		b.rec.set(b.status, err)
	}
	return n, err
}

// classify names the kind of a failed operation from its error and the
// last exchange the transport saw.
func classify(err error, rec *recorder) string {
	status, terr := rec.get()
	if terr != nil {
		if isTimeout(terr) {
			return KindTimeout
		}
		if status != 0 {
			// The headers came, the body broke off.
			return KindBadResponse
		}
		return KindConnection
	}
	switch {
	case status == http.StatusUnauthorized || status == http.StatusForbidden:
		return KindUnauthorized
	case status == http.StatusNotFound:
		return KindNotFound
	case status == http.StatusTooManyRequests:
		return KindThrottled
	case status >= 500:
		return KindServerError
	case status != 0 && (status < 200 || status > 299):
		return KindBadResponse
	}
	if isTimeout(err) {
		return KindTimeout
	}
	if status == 0 {
		// No answer at all was recorded: the request never went out.
		return KindConnection
	}
	return KindBadResponse
}

func isTimeout(err error) bool {
	if errors.Is(err, context.DeadlineExceeded) {
		return true
	}
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}
