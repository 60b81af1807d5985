package main

import (
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"net"
	"net/http"
	"strings"
	"sync"
	"time"
)

// imdsServer is a small IMDSv2: a session token from PUT /latest/api/token,
// required on every read, and the paths patchd's role watcher reads. The
// pinned amazon-ec2-metadata-mock serves the same protocol; this one lives
// in the demo so a role change is one call and the demo needs no second
// binary.
type imdsServer struct {
	URL string
	srv *http.Server

	mu     sync.Mutex
	role   string
	tokens map[string]time.Time
}

func startIMDS(role string) (*imdsServer, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	s := &imdsServer{URL: "http://" + l.Addr().String(), role: role, tokens: map[string]time.Time{}}
	s.srv = &http.Server{Handler: http.HandlerFunc(s.serve), ReadHeaderTimeout: 5 * time.Second}
	go func() { _ = s.srv.Serve(l) }()
	return s, nil
}

func (s *imdsServer) Close() { _ = s.srv.Close() }

// SetRole attaches another instance profile and role, as an operator does
// with ec2 replace-iam-instance-profile-association.
func (s *imdsServer) SetRole(role string) {
	s.mu.Lock()
	s.role = role
	s.mu.Unlock()
}

func (s *imdsServer) serve(w http.ResponseWriter, r *http.Request) {
	if r.URL.Path == "/latest/api/token" {
		if r.Method != http.MethodPut || r.Header.Get("X-aws-ec2-metadata-token-ttl-seconds") == "" {
			http.Error(w, "token requests are PUT with X-aws-ec2-metadata-token-ttl-seconds", http.StatusBadRequest)
			return
		}
		b := make([]byte, 16)
		_, _ = rand.Read(b)
		tok := hex.EncodeToString(b)
		s.mu.Lock()
		s.tokens[tok] = time.Now()
		s.mu.Unlock()
		w.Header().Set("X-aws-ec2-metadata-token-ttl-seconds", r.Header.Get("X-aws-ec2-metadata-token-ttl-seconds"))
		fmt.Fprint(w, tok)
		return
	}
	s.mu.Lock()
	_, ok := s.tokens[r.Header.Get("X-aws-ec2-metadata-token")]
	role := s.role
	s.mu.Unlock()
	if !ok {
		http.Error(w, "", http.StatusUnauthorized)
		return
	}
	if r.URL.Path == "/latest/dynamic/instance-identity/document" {
		// Where the SDK reads the region from.
		fmt.Fprintf(w, `{"accountId":"123456789012","instanceId":%q,"region":"eu-west-1","availabilityZone":"eu-west-1a"}`, instanceID)
		return
	}
	const md = "/latest/meta-data/"
	switch p := strings.TrimPrefix(r.URL.Path, md); {
	case p == "instance-id":
		fmt.Fprint(w, instanceID)
	case p == "placement/region":
		fmt.Fprint(w, "eu-west-1")
	case p == "iam/info":
		fmt.Fprintf(w, `{"Code":"Success","LastUpdated":"%s","InstanceProfileArn":"arn:aws:iam::123456789012:instance-profile/%s","InstanceProfileId":"AIPA%s"}`,
			time.Now().UTC().Format(time.RFC3339), role, strings.ToUpper(strings.ReplaceAll(role, "-", "")))
	case p == "iam/security-credentials/":
		fmt.Fprint(w, role)
	case p == "iam/security-credentials/"+role:
		now := time.Now().UTC()
		fmt.Fprintf(w, `{"Code":"Success","LastUpdated":"%s","Type":"AWS-HMAC","AccessKeyId":"ASIADEMODEMODEMO0001","SecretAccessKey":"demo","Token":"demo","Expiration":"%s"}`,
			now.Format(time.RFC3339), now.Add(6*time.Hour).Format(time.RFC3339))
	default:
		http.NotFound(w, r)
	}
}
