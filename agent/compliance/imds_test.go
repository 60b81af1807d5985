package compliance

// The credentials and the region come from a real IMDSv2
// (amazon-ec2-metadata-mock, pinned in go.mod as a tool), started the way
// agent/imds's tests start it; the SDK signs with what the mock serves.

import (
	"testing"
	"time"

	"github.com/patchd/patchd/agent/compliance/ssmtest"
	"github.com/patchd/patchd/agent/testbin"
)

var mockBin string

func TestMain(m *testing.M) {
	testbin.Main(m, testbin.Build{Name: "ec2-metadata-mock", Pkg: "github.com/aws/amazon-ec2-metadata-mock/cmd/ec2-metadata-mock", Out: &mockBin})
}

func TestIMDSMockEndToEnd(t *testing.T) {
	mock := ssmtest.StartIMDSMock(t, mockBin)
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
			wantRegion := ssmtest.MockRegion
			if tc.envRegion != "" {
				wantRegion = tc.envRegion
			}
			if acc[0].AccessKey != ssmtest.MockAccessKey || acc[0].Region != wantRegion {
				t.Errorf("signed with %s for %s, want the mock's role key for %s", acc[0].AccessKey, acc[0].Region, wantRegion)
			}
		})
	}
}
