package ssmtest

import (
	"encoding/json"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"
)

// MockAccessKey is the role key id StartIMDSMock serves. The mock's default
// (11 characters) is shorter than a real key id, which Server refuses.
const MockAccessKey = "ASIAPATCHDMOCKROLE01"

// MockRegion is the region the mock's instance identity document names.
const MockRegion = "us-east-1"

// StartIMDSMock runs amazon-ec2-metadata-mock (bin, built by the test's
// TestMain with agent/testbin) on a free loopback port as a real IMDSv2
// serving role "web" with MockAccessKey, the way agent/imds's tests run it,
// and returns its address. It stops at the end of the test.
func StartIMDSMock(t testing.TB, bin string) string {
	t.Helper()
	dir := t.TempDir()
	cfg := map[string]any{"metadata": map[string]any{"values": map[string]any{
		"iam-security-credentials-role": "web",
		"iam-security-credentials": map[string]string{
			"Code": "Success", "LastUpdated": time.Now().UTC().Format(time.RFC3339), "Type": "AWS-HMAC",
			"AccessKeyId": MockAccessKey, "SecretAccessKey": "mock-secret", "Token": "mock-token",
			"Expiration": time.Now().Add(6 * time.Hour).UTC().Format(time.RFC3339),
		},
	}}}
	data, _ := json.Marshal(cfg)
	config := filepath.Join(dir, "aemm-config.json")
	if err := os.WriteFile(config, data, 0o644); err != nil {
		t.Fatal(err)
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	_, port, _ := net.SplitHostPort(l.Addr().String())
	l.Close()
	logf, err := os.Create(filepath.Join(dir, "mock.log"))
	if err != nil {
		t.Fatal(err)
	}
	defer logf.Close()
	cmd := exec.Command(bin, "-n", "127.0.0.1", "-p", port, "-I", "-c", config)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "HOME="+dir)
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	deadline := time.NewTimer(30 * time.Second)
	defer deadline.Stop()
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for {
		c, err := net.DialTimeout("tcp", "127.0.0.1:"+port, time.Second)
		if err == nil {
			c.Close()
			return "http://127.0.0.1:" + port
		}
		select {
		case <-deadline.C:
			b, _ := os.ReadFile(filepath.Join(dir, "mock.log"))
			t.Fatalf("the IMDS mock did not listen on %s: %s", port, b)
		case <-tick.C:
		}
	}
}
