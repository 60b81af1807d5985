// Package controlclient is the CLI's side of the control channel: one
// HTTP/1.0 request per connection to the daemon's unix socket, a JSON body
// each way.
//
// It does not use net/http. The CLI starts for every `patchd status`,
// `gate` and `hooks run`, and net/http (with crypto/tls, which it links)
// costs each of those starts about a third of its CPU time in page faults
// and package inits (BENCHMARKS.md, "CLI start-up"). The requests need
// little of it: the daemon is the only server, speaks net/http's HTTP/1.1,
// and answers an HTTP/1.0 request with a status line, headers and a body
// that ends where Content-Length says or where the connection closes
// (never chunked).
package controlclient

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"strconv"
	"strings"
	"time"
)

// MaxAnswer bounds the body of an answer; the largest, `status` with the
// last cycle's packages, is far below it.
const MaxAnswer = 16 << 20

// maxHeader bounds the status line and headers together.
const maxHeader = 64 << 10

// StatusUnavailable is the daemon's answer while it cannot serve a request
// yet (starting) or any more (stopping).
const StatusUnavailable = 503

// ErrorReply is the body of every error answer of the API: one key,
// "error", whatever the endpoint, so that clients (and curl users) read
// failures one way.
type ErrorReply struct {
	Error string `json:"error"`
}

// ErrUnreachable wraps failures to reach the daemon at all.
var ErrUnreachable = errors.New("patchd daemon unreachable")

// APIError is a non-2xx answer of the daemon: it is running and said no.
// Status tells the CLI which exit code to use.
type APIError struct {
	Status  int
	Message string
}

func (e *APIError) Error() string { return "patchd: " + e.Message }

// Client talks to the daemon's control socket.
type Client struct {
	Path    string
	Timeout time.Duration
}

// New returns a client for the socket at path. timeout bounds a whole
// request; gate requests that wait for hooks pass a long one.
func New(path string, timeout time.Duration) *Client {
	return &Client{Path: path, Timeout: timeout}
}

// Do sends method to the API path with body in (may be nil) and decodes a
// JSON answer into out (may be nil). A non-2xx answer is an APIError
// carrying the daemon's message; a failure to connect, send or read is
// ErrUnreachable.
func (c *Client) Do(ctx context.Context, method, path string, in, out any) error {
	var body []byte
	if in != nil {
		b, err := json.Marshal(in)
		if err != nil {
			return err
		}
		body = b
	}
	if c.Timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, c.Timeout)
		defer cancel()
	}
	status, reason, data, err := c.roundTrip(ctx, method, path, body)
	if err != nil {
		if ctx.Err() != nil {
			err = fmt.Errorf("%v (%v)", err, ctx.Err())
		}
		return fmt.Errorf("%w at %s: %v (is patchd running? systemctl status patchd)", ErrUnreachable, c.Path, err)
	}
	if status/100 != 2 {
		var e ErrorReply
		if json.Unmarshal(data, &e) == nil && e.Error != "" {
			return &APIError{Status: status, Message: e.Error}
		}
		return &APIError{Status: status, Message: strings.TrimSpace(strconv.Itoa(status) + " " + reason + ": " + strings.TrimSpace(string(data)))}
	}
	if out != nil {
		if err := json.Unmarshal(data, out); err != nil {
			return fmt.Errorf("decoding answer from %s: %w", c.Path, err)
		}
	}
	return nil
}

// roundTrip sends one request on a new connection and reads the answer.
func (c *Client) roundTrip(ctx context.Context, method, path string, body []byte) (status int, reason string, data []byte, err error) {
	if !validToken(method) || !strings.HasPrefix(path, "/") || strings.ContainsAny(path, " \r\n") {
		return 0, "", nil, fmt.Errorf("bad request %q %q", method, path)
	}
	var d net.Dialer
	conn, err := d.DialContext(ctx, "unix", c.Path)
	if err != nil {
		return 0, "", nil, err
	}
	defer conn.Close()
	// ctx bounds the exchange too: its end (the timeout, or ^C) unblocks
	// whatever read or write is under way.
	stop := context.AfterFunc(ctx, func() { _ = conn.SetDeadline(time.Unix(1, 0)) })
	defer stop()

	var req bytes.Buffer
	fmt.Fprintf(&req, "%s %s HTTP/1.0\r\nHost: patchd\r\nAccept: application/json\r\n", method, path)
	if body != nil {
		fmt.Fprintf(&req, "Content-Type: application/json\r\nContent-Length: %d\r\n", len(body))
	}
	req.WriteString("\r\n")
	req.Write(body)
	if _, err := conn.Write(req.Bytes()); err != nil {
		return 0, "", nil, err
	}
	return readAnswer(bufio.NewReader(conn))
}

// readAnswer reads an HTTP/1.x answer to an HTTP/1.0 request.
func readAnswer(r *bufio.Reader) (status int, reason string, data []byte, err error) {
	budget := maxHeader
	line, err := readLine(r, &budget)
	if err != nil {
		return 0, "", nil, fmt.Errorf("reading the answer's status line: %w", err)
	}
	proto, rest, _ := strings.Cut(line, " ")
	code, reason, _ := strings.Cut(rest, " ")
	status, cerr := strconv.Atoi(code)
	if !strings.HasPrefix(proto, "HTTP/1.") || len(code) != 3 || cerr != nil || status < 100 {
		return 0, "", nil, fmt.Errorf("not an HTTP answer: %q", line)
	}
	length := int64(-1)
	for {
		line, err := readLine(r, &budget)
		if err != nil {
			return 0, "", nil, fmt.Errorf("reading the answer's headers: %w", err)
		}
		if line == "" {
			break
		}
		name, value, ok := strings.Cut(line, ":")
		if !ok {
			return 0, "", nil, fmt.Errorf("malformed header line %q", line)
		}
		value = strings.TrimSpace(value)
		switch {
		case strings.EqualFold(name, "Content-Length"):
			n, err := strconv.ParseInt(value, 10, 64)
			if err != nil || n < 0 || (length >= 0 && n != length) {
				return 0, "", nil, fmt.Errorf("bad Content-Length %q", value)
			}
			length = n
		case strings.EqualFold(name, "Transfer-Encoding") && !strings.EqualFold(value, "identity"):
			return 0, "", nil, fmt.Errorf("unexpected Transfer-Encoding %q in an answer to HTTP/1.0", value)
		}
	}
	if length > MaxAnswer {
		return 0, "", nil, fmt.Errorf("answer of %d bytes is over the %d-byte limit", length, MaxAnswer)
	}
	if length >= 0 {
		data = make([]byte, length)
		if _, err := io.ReadFull(r, data); err != nil {
			return 0, "", nil, fmt.Errorf("answer cut short: %w", err)
		}
		return status, reason, data, nil
	}
	// No length: the body ends when the daemon closes the connection.
	data, err = io.ReadAll(io.LimitReader(r, MaxAnswer+1))
	if err != nil {
		return 0, "", nil, fmt.Errorf("reading the answer: %w", err)
	}
	if len(data) > MaxAnswer {
		return 0, "", nil, fmt.Errorf("answer over the %d-byte limit", MaxAnswer)
	}
	return status, reason, data, nil
}

// readLine reads one CRLF- (or LF-) terminated line within *budget bytes.
func readLine(r *bufio.Reader, budget *int) (string, error) {
	var line []byte
	for {
		frag, err := r.ReadSlice('\n')
		if *budget -= len(frag); *budget < 0 {
			return "", errors.New("headers over the size limit")
		}
		line = append(line, frag...)
		if err == bufio.ErrBufferFull {
			continue
		}
		if err != nil {
			if err == io.EOF {
				err = io.ErrUnexpectedEOF
			}
			return "", err
		}
		return strings.TrimRight(string(line), "\r\n"), nil
	}
}

// validToken reports whether s is a method name: letters only.
func validToken(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < 'A' || c > 'Z' {
			return false
		}
	}
	return true
}
