package compliance

// The credentials and the region come from a real IMDSv2
// (amazon-ec2-metadata-mock, pinned in go.mod as a tool), started the way
// agent/imds's tests start it; the SDK signs with what the mock serves.

import (
	"encoding/json"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/patchd/patchd/agent/compliance/ssmtest"
	"github.com/patchd/patchd/agent/testbin"
)

var mockBin string

func TestMain(m *testing.M) {
	testbin.Main(m, testbin.Build{Name: "ec2-metadata-mock", Pkg: "github.com/aws/amazon-ec2-metadata-mock/cmd/ec2-metadata-mock", Out: &mockBin})
}

// mockAccessKey is the role's key id the mock serves; its default (11
// characters) is shorter than a real key id, which the endpoint refuses.
const mockAccessKey = "ASIAPATCHDMOCKROLE01"

func startMock(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	cfg := map[string]any{"metadata": map[string]any{"values": map[string]any{
		"iam-security-credentials-role": "web",
		"iam-security-credentials": map[string]string{
			"Code": "Success", "LastUpdated": time.Now().UTC().Format(time.RFC3339), "Type": "AWS-HMAC",
			"AccessKeyId": mockAccessKey, "SecretAccessKey": "mock-secret", "Token": "mock-token",
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
	cmd := exec.Command(mockBin, "-n", "127.0.0.1", "-p", port, "-I", "-c", config)
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
			t.Fatalf("the IMDS mock did not listen: %s", b)
		case <-tick.C:
		}
	}
}

func TestIMDSMockEndToEnd(t *testing.T) {
	mock := startMock(t)
	for _, tc := range []struct {
		name string
		// imdsSetting is imds.endpoint; envIMDS is AWS_EC2_METADATA_SERVICE_ENDPOINT;
		// endpointSetting is ssm.endpoint, envSSM AWS_ENDPOINT_URL_SSM.
		imdsSetting, envIMDS bool
		endpointSetting      bool
		envRegion            string
	}{
		{name: "settings", imdsSetting: true, endpointSetting: true},
		{name: "environment", envIMDS: true},
		{name: "AWS_REGION wins over IMDS", imdsSetting: true, envRegion: "eu-central-1"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			noSharedFiles(t)
			for _, k := range []string{"AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_DEFAULT_REGION", "AWS_EC2_METADATA_SERVICE_ENDPOINT", "AWS_ENDPOINT_URL_SSM"} {
				t.Setenv(k, "")
			}
			t.Setenv("AWS_REGION", tc.envRegion)
			srv := ssmtest.New()
			defer srv.Close()
			var co ConnectOptions
			if tc.imdsSetting {
				co.IMDSEndpoint = mock
			}
			if tc.envIMDS {
				t.Setenv("AWS_EC2_METADATA_SERVICE_ENDPOINT", mock)
			}
			if tc.endpointSetting {
				co.Endpoint = srv.URL
			} else {
				t.Setenv("AWS_ENDPOINT_URL_SSM", srv.URL)
			}
			co.Timeout = 30 * time.Second
			h := newHarness(t, srv, "")
			h.start(co)
			h.waiting()
			h.rep.CycleClosed(sampleEntry("c1", "failed"))
			if err := h.tried(); err != nil {
				t.Fatalf("not delivered: %v\n%s", err, h.logs.String())
			}
			h.checkValid()
			acc := srv.Accepted()
			if len(acc) != 1 {
				t.Fatalf("%d accepted", len(acc))
			}
			wantRegion := "us-east-1" // the mock's own region
			if tc.envRegion != "" {
				wantRegion = tc.envRegion
			}
			if acc[0].AccessKey != mockAccessKey || acc[0].Region != wantRegion {
				t.Errorf("signed with %s for %s, want the mock's role key for %s", acc[0].AccessKey, acc[0].Region, wantRegion)
			}
		})
	}
}
