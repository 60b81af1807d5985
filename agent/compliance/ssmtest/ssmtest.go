// Package ssmtest is a local Systems Manager endpoint for tests: it speaks
// the service's JSON 1.1 protocol on 127.0.0.1, checks the SigV4
// Authorization header's shape, and validates every PutComplianceItems
// request against the API reference's constraints, so a request the real
// service would refuse fails the test. It can also misbehave on purpose:
// throttle, deny, fail with 500, hang, or answer garbage.
package ssmtest

import (
	"encoding/json"
	"fmt"
	"io"
	"math"
	"net/http"
	"net/http/httptest"
	"regexp"
	"slices"
	"strings"
	"sync"
	"time"
)

// Fault is how the server answers the next requests.
type Fault string

// Faults the server can play.
const (
	OK           Fault = ""
	Throttle     Fault = "throttle"      // 400 ThrottlingException
	AccessDenied Fault = "access-denied" // 400 AccessDeniedException
	ServerError  Fault = "500"           // 500 InternalServerError
	Hang         Fault = "hang"          // no answer until the client gives up
	Garbage      Fault = "garbage"       // 200 with a body that is not JSON
)

// Request is one accepted PutComplianceItems call, decoded.
type Request struct {
	ComplianceType   string
	ResourceId       string
	ResourceType     string
	UploadType       string
	ItemContentHash  string
	ExecutionSummary struct {
		ExecutionId   string
		ExecutionType string
		ExecutionTime float64
	}
	Items []Item
	// AccessKey is the key id the request was signed with.
	AccessKey string `json:"-"`
	// Region is the region of the signature's scope.
	Region string `json:"-"`
}

// Item is a ComplianceItemEntry.
type Item struct {
	Id       string
	Title    string
	Severity string
	Status   string
	Details  map[string]string
}

// Server is the fake endpoint.
type Server struct {
	*httptest.Server

	mu       sync.Mutex
	faults   []Fault // played in order, then OK
	accepted []Request
	attempts int
	invalid  []string
	notify   chan struct{}
	hang     chan struct{}
}

// New starts a server on 127.0.0.1; it stops at Close.
func New() *Server {
	s := &Server{notify: make(chan struct{}, 1000), hang: make(chan struct{})}
	s.Server = httptest.NewServer(http.HandlerFunc(s.serve))
	return s
}

// Close releases hung requests and stops the server.
func (s *Server) Close() {
	s.mu.Lock()
	select {
	case <-s.hang:
	default:
		close(s.hang)
	}
	s.mu.Unlock()
	s.Server.CloseClientConnections()
	s.Server.Close()
}

// Fail makes the next len(fs) requests answer with fs, in order.
func (s *Server) Fail(fs ...Fault) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.faults = append(s.faults, fs...)
}

// Accepted returns the requests answered with success.
func (s *Server) Accepted() []Request {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.accepted)
}

// Attempts is the number of requests received, answered or not.
func (s *Server) Attempts() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.attempts
}

// Invalid lists why requests were refused as malformed; a test checks it is
// empty.
func (s *Server) Invalid() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.invalid)
}

// Requests signals once per request received (after it was answered, or
// when it starts to hang).
func (s *Server) Requests() <-chan struct{} { return s.notify }

// sigV4 is the shape of a SigV4 Authorization header.
var sigV4 = regexp.MustCompile(`^AWS4-HMAC-SHA256 Credential=([A-Z0-9]{16,128})/(\d{8})/([a-z0-9-]+)/ssm/aws4_request, SignedHeaders=([a-z0-9;-]+), Signature=[0-9a-f]{64}$`)

// Constraints of the API reference (PutComplianceItems, ComplianceItemEntry,
// ComplianceExecutionSummary).
var (
	complianceType = regexp.MustCompile(`^([A-Za-z0-9_\-]\w+|Custom:[a-zA-Z0-9_\-]\w+)$`)
	severities     = []string{"CRITICAL", "HIGH", "MEDIUM", "LOW", "INFORMATIONAL", "UNSPECIFIED"}
	statuses       = []string{"COMPLIANT", "NON_COMPLIANT"}
)

const maxItems = 10000

func (s *Server) serve(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	s.attempts++
	fault := OK
	if len(s.faults) > 0 {
		fault, s.faults = s.faults[0], s.faults[1:]
	}
	s.mu.Unlock()
	defer func() {
		select {
		case s.notify <- struct{}{}:
		default:
		}
	}()

	body, _ := io.ReadAll(r.Body)
	req, problems := validate(r, body)
	if len(problems) > 0 {
		s.mu.Lock()
		s.invalid = append(s.invalid, problems...)
		s.mu.Unlock()
		writeError(w, http.StatusBadRequest, "ValidationException", strings.Join(problems, "; "))
		return
	}
	switch fault {
	case Throttle:
		writeError(w, http.StatusBadRequest, "ThrottlingException", "Rate exceeded")
		return
	case AccessDenied:
		writeError(w, http.StatusBadRequest, "AccessDeniedException",
			fmt.Sprintf("User: arn:aws:sts::123456789012:assumed-role/web/%s is not authorized to perform: ssm:PutComplianceItems on resource: arn:aws:ssm:%s:123456789012:managed-instance/%s because no identity-based policy allows the ssm:PutComplianceItems action", req.ResourceId, req.Region, req.ResourceId))
		return
	case ServerError:
		writeError(w, http.StatusInternalServerError, "InternalServerError", "internal error")
		return
	case Hang:
		select {
		case s.notify <- struct{}{}:
		default:
		}
		select {
		case <-r.Context().Done():
		case <-s.hang:
		}
		return
	case Garbage:
		w.Header().Set("Content-Type", "application/x-amz-json-1.1")
		w.WriteHeader(http.StatusOK)
		_, _ = io.WriteString(w, "<html>not json")
		return
	}
	s.mu.Lock()
	s.accepted = append(s.accepted, req)
	s.mu.Unlock()
	w.Header().Set("Content-Type", "application/x-amz-json-1.1")
	w.Header().Set("X-Amzn-Requestid", "00000000-0000-0000-0000-000000000000")
	_, _ = io.WriteString(w, "{}")
}

func writeError(w http.ResponseWriter, code int, typ, msg string) {
	w.Header().Set("Content-Type", "application/x-amz-json-1.1")
	w.Header().Set("X-Amzn-Errortype", typ)
	w.WriteHeader(code)
	_ = json.NewEncoder(w).Encode(map[string]string{"__type": typ, "message": msg})
}

// validate checks the protocol, the signature's shape and every
// constraint of the request.
func validate(r *http.Request, body []byte) (Request, []string) {
	var req Request
	var ps []string
	bad := func(format string, args ...any) { ps = append(ps, fmt.Sprintf(format, args...)) }
	if r.Method != http.MethodPost || r.URL.Path != "/" {
		bad("%s %s: the JSON protocol posts to /", r.Method, r.URL.Path)
	}
	if ct := r.Header.Get("Content-Type"); ct != "application/x-amz-json-1.1" {
		bad("Content-Type %q, want application/x-amz-json-1.1", ct)
	}
	if t := r.Header.Get("X-Amz-Target"); t != "AmazonSSM.PutComplianceItems" {
		bad("X-Amz-Target %q: only AmazonSSM.PutComplianceItems is served", t)
	}
	m := sigV4.FindStringSubmatch(r.Header.Get("Authorization"))
	if m == nil {
		bad("Authorization %q is not a SigV4 header for ssm", r.Header.Get("Authorization"))
	} else {
		req.AccessKey, req.Region = m[1], m[3]
		if !strings.Contains(m[4], "host") || !strings.Contains(m[4], "x-amz-date") || !strings.Contains(m[4], "x-amz-target") {
			bad("SignedHeaders %q must include host, x-amz-date and x-amz-target", m[4])
		}
		if d := r.Header.Get("X-Amz-Date"); !strings.HasPrefix(d, m[2]) {
			bad("X-Amz-Date %q does not match the credential scope's date %s", d, m[2])
		}
	}
	// Unknown fields are refused, as the service refuses them.
	var raw map[string]json.RawMessage
	if err := json.Unmarshal(body, &raw); err != nil {
		bad("body is not a JSON object: %v", err)
		return req, ps
	}
	for k := range raw {
		if !slices.Contains([]string{"ComplianceType", "ResourceId", "ResourceType", "UploadType", "ItemContentHash", "ExecutionSummary", "Items"}, k) {
			bad("unknown field %s", k)
		}
	}
	for _, k := range []string{"ComplianceType", "ResourceId", "ResourceType", "ExecutionSummary", "Items"} {
		if _, ok := raw[k]; !ok {
			bad("%s is required", k)
		}
	}
	if es, ok := raw["ExecutionSummary"]; ok {
		var sum map[string]json.RawMessage
		if json.Unmarshal(es, &sum) != nil {
			bad("ExecutionSummary is not an object")
		} else if t, ok := sum["ExecutionTime"]; !ok {
			bad("ExecutionSummary.ExecutionTime is required")
		} else {
			var secs float64
			// JSON 1.1 sends timestamps as epoch seconds.
			if json.Unmarshal(t, &secs) != nil {
				bad("ExecutionSummary.ExecutionTime %s is not epoch seconds", t)
			} else if tm := time.Unix(int64(secs), 0); secs <= 0 || math.IsNaN(secs) || tm.After(time.Now().Add(24*time.Hour)) || tm.Year() < 2017 {
				bad("ExecutionSummary.ExecutionTime %s is not a plausible time", t)
			}
		}
	}
	if err := json.Unmarshal(body, &req); err != nil {
		bad("body does not decode: %v", err)
		return req, ps
	}
	length := func(name, v string, min, max int) {
		if len(v) < min || len(v) > max {
			bad("%s %q: length %d not in %d..%d", name, v, len(v), min, max)
		}
	}
	length("ComplianceType", req.ComplianceType, 1, 100)
	if !complianceType.MatchString(req.ComplianceType) {
		bad("ComplianceType %q does not match %s", req.ComplianceType, complianceType)
	}
	length("ResourceId", req.ResourceId, 1, 100)
	length("ResourceType", req.ResourceType, 1, 50)
	if req.ResourceType != "" && req.ResourceType != "ManagedInstance" {
		bad("ResourceType %q: ManagedInstance is the only supported type", req.ResourceType)
	}
	if req.UploadType != "" && req.UploadType != "COMPLETE" && req.UploadType != "PARTIAL" {
		bad("UploadType %q", req.UploadType)
	}
	length("ItemContentHash", req.ItemContentHash, 0, 256)
	length("ExecutionSummary.ExecutionId", req.ExecutionSummary.ExecutionId, 0, 100)
	length("ExecutionSummary.ExecutionType", req.ExecutionSummary.ExecutionType, 0, 50)
	if len(req.Items) > maxItems {
		bad("%d items, at most %d", len(req.Items), maxItems)
	}
	ids := map[string]bool{}
	for i, it := range req.Items {
		if !slices.Contains(severities, it.Severity) {
			bad("Items[%d].Severity %q not in %v", i, it.Severity, severities)
		}
		if !slices.Contains(statuses, it.Status) {
			bad("Items[%d].Status %q not in %v", i, it.Status, statuses)
		}
		// The reference leaves Id optional and unbounded; the console
		// lists items by it, so the fake holds patchd to a non-empty,
		// unique id of at most 100 bytes (ListComplianceItems' filter
		// values are that long).
		length(fmt.Sprintf("Items[%d].Id", i), it.Id, 1, 100)
		if ids[it.Id] {
			bad("Items[%d].Id %q twice", i, it.Id)
		}
		ids[it.Id] = true
		length(fmt.Sprintf("Items[%d].Title", i), it.Title, 0, 500)
		for k, v := range it.Details {
			length(fmt.Sprintf("Items[%d].Details key", i), k, 1, 64)
			length(fmt.Sprintf("Items[%d].Details[%s]", i, k), v, 0, 4096)
		}
	}
	return req, ps
}
