package compliance

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/patchd/patchd/agent/compliance/ssmtest"
	agentimds "github.com/patchd/patchd/agent/imds"
)

// clearAWSEnv blanks every variable the chain reads, and points the shared
// files at one that holds keys: the chain must not read it.
func clearAWSEnv(t *testing.T) {
	t.Helper()
	for _, k := range []string{envAccessKey, envSecretKey, envSessionToken, envRegion, envDefaultRegion,
		envIMDSDisabled, agentimds.EndpointEnv, envEndpointSSM, envEndpoint, "AWS_PROFILE"} {
		t.Setenv(k, "")
	}
	shared := filepath.Join(t.TempDir(), "credentials")
	if err := os.WriteFile(shared, []byte("[default]\naws_access_key_id = AKIDSHAREDFILE000001\naws_secret_access_key = s\nregion = sa-east-1\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Setenv("AWS_SHARED_CREDENTIALS_FILE", shared)
	t.Setenv("AWS_CONFIG_FILE", shared)
}

// sendOnce connects with co and sends one report; it returns what srv
// accepted.
func sendOnce(t *testing.T, srv *ssmtest.Server, co ConnectOptions) ssmtest.Request {
	t.Helper()
	co.Timeout = 30 * time.Second
	s, err := Connect(context.Background(), co)
	if err != nil {
		t.Fatalf("Connect: %v", err)
	}
	e := sampleEntry("c1", "success")
	if err := s.Put(context.Background(), instance, Build(&e, nil, defaultSeverity, closed)); err != nil {
		t.Fatalf("Put: %v (invalid: %v)", err, srv.Invalid())
	}
	acc := srv.Accepted()
	if len(acc) != 1 {
		t.Fatalf("%d accepted, want 1", len(acc))
	}
	return acc[0]
}

// On an instance with a role, keys in the environment still win, as for
// the AWS CLI; the region still comes from IMDS when no variable names it.
func TestEnvironmentCredentialsWinOverTheInstanceRole(t *testing.T) {
	mock := ssmtest.StartIMDSMock(t, mockBin)
	clearAWSEnv(t)
	srv := ssmtest.New()
	defer srv.Close()
	t.Setenv(envAccessKey, "AKIDPATCHDENVIRON001")
	t.Setenv(envSecretKey, "secret")
	got := sendOnce(t, srv, ConnectOptions{IMDSEndpoint: mock, Endpoint: srv.URL})
	if got.AccessKey != "AKIDPATCHDENVIRON001" || got.Region != ssmtest.MockRegion {
		t.Errorf("signed with %s for %s, want the environment's key for the mock's region %s", got.AccessKey, got.Region, ssmtest.MockRegion)
	}
}

// ssm.endpoint, else AWS_ENDPOINT_URL_SSM, else AWS_ENDPOINT_URL.
func TestEndpointOrder(t *testing.T) {
	for _, tc := range []struct {
		name                       string
		setting, envSSM, envGlobal bool
	}{
		{name: "ssm.endpoint wins", setting: true, envSSM: true, envGlobal: true},
		{name: "AWS_ENDPOINT_URL_SSM over AWS_ENDPOINT_URL", envSSM: true, envGlobal: true},
		{name: "AWS_ENDPOINT_URL", envGlobal: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			clearAWSEnv(t)
			envCredentials(t, "")
			want, other := ssmtest.New(), ssmtest.New()
			defer want.Close()
			defer other.Close()
			var co ConnectOptions
			// The first source the test sets is the one that must win;
			// every later one points at the other server.
			target := want.URL
			if tc.setting {
				co.Endpoint, target = target, other.URL
			}
			if tc.envSSM {
				t.Setenv(envEndpointSSM, target)
				target = other.URL
			}
			if tc.envGlobal {
				t.Setenv(envEndpoint, target)
			}
			co.IMDSEndpoint = "http://127.0.0.1:9"
			sendOnce(t, want, co)
			if n := other.Attempts(); n != 0 {
				t.Errorf("%d requests went to the endpoint of lower precedence", n)
			}
		})
	}
}

func TestRegionFromAWSDefaultRegion(t *testing.T) {
	clearAWSEnv(t)
	srv := ssmtest.New()
	defer srv.Close()
	envCredentials(t, srv.URL)
	t.Setenv(envRegion, "")
	t.Setenv(envDefaultRegion, "ap-southeast-2")
	// IMDS is a closed port: asking it would fail the test.
	got := sendOnce(t, srv, ConnectOptions{IMDSEndpoint: "http://127.0.0.1:9"})
	if got.Region != "ap-southeast-2" {
		t.Errorf("signed for %s, want ap-southeast-2", got.Region)
	}
}

// AWS_EC2_METADATA_DISABLED=true keeps IMDS out even when it would answer;
// the error names what to set instead, and the shared files (which hold
// keys and a region here) are not a way around it.
func TestIMDSDisabled(t *testing.T) {
	mock := ssmtest.StartIMDSMock(t, mockBin)
	for _, tc := range []struct {
		name       string
		region     string
		keys       bool
		wantErr    []string // all in the error; none: it connects
		wantRegion string
	}{
		{name: "no region", wantErr: []string{envIMDSDisabled, envRegion}},
		{name: "no keys", region: "eu-west-3", wantErr: []string{envIMDSDisabled, envAccessKey, envSecretKey}},
		{name: "environment only", region: "eu-west-3", keys: true, wantRegion: "eu-west-3"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			clearAWSEnv(t)
			t.Setenv(envIMDSDisabled, "true")
			t.Setenv(envRegion, tc.region)
			if tc.keys {
				t.Setenv(envAccessKey, "AKIDPATCHDENVIRON001")
				t.Setenv(envSecretKey, "secret")
			}
			srv := ssmtest.New()
			defer srv.Close()
			co := ConnectOptions{IMDSEndpoint: mock, Endpoint: srv.URL}
			if tc.wantErr == nil {
				if got := sendOnce(t, srv, co); got.AccessKey != "AKIDPATCHDENVIRON001" || got.Region != tc.wantRegion {
					t.Errorf("signed with %s for %s", got.AccessKey, got.Region)
				}
				return
			}
			_, err := Connect(context.Background(), co)
			if err == nil {
				t.Fatal("connected with IMDS disabled and nothing in the environment")
			}
			for _, w := range tc.wantErr {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not name %s", err, w)
				}
			}
		})
	}
}
