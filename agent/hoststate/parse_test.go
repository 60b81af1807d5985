package hoststate

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func readTestdata(t *testing.T, name string) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", name))
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func TestCompareDebian(t *testing.T) {
	for _, tc := range []struct {
		a, b string
		want int
	}{
		{"6.1.76-1", "6.1.76-1", 0},
		{"6.1.76-1", "6.1.38-1", 1},
		{"6.1.9-1", "6.1.10-1", -1},
		{"1.0~rc1-1", "1.0-1", -1},
		{"1.0-1", "1.0+deb12u1-1", -1},
		{"1:1.0-1", "2.0-1", 1},
		{"6.8.0-1018.19~22.04.1", "6.8.0-1021.23~22.04.1", -1},
		{"2.36-9+deb12u14", "2.36-9+deb12u4", 1},
		{"1.0", "1.0-0", 0},
		{"1.0a", "1.0", 1},
		{"1.0~", "1.0", -1},
	} {
		if got := CompareDebian(tc.a, tc.b); got != tc.want {
			t.Errorf("CompareDebian(%q, %q) = %d, want %d", tc.a, tc.b, got, tc.want)
		}
		if got := CompareDebian(tc.b, tc.a); got != -tc.want {
			t.Errorf("CompareDebian(%q, %q) = %d, want %d", tc.b, tc.a, got, -tc.want)
		}
	}
}

func TestCompareRPM(t *testing.T) {
	for _, tc := range []struct {
		va, ra, vb, rb string
		want           int
	}{
		{"6.1.61", "85.141.amzn2023", "6.1.61", "85.141.amzn2023", 0},
		{"6.1.112", "122.189.amzn2023", "6.1.66", "91.160.amzn2023", 1},
		{"5.14.0", "362.8.1.el9_3", "5.14.0", "362.13.1.el9_3", -1},
		{"1.0", "1", "1.0a", "1", -1},
		{"1.0~rc1", "1", "1.0", "1", -1},
		{"1.0^git1", "1", "1.0", "1", 1},
		{"1.0^git1", "1", "1.0.1", "1", -1},
		{"2.0", "1", "2a", "1", 1},
		{"4.14.355", "275.582.amzn2", "4.14.355", "275.582.amzn2", 0},
		{"010", "1", "10", "1", 0},
	} {
		if got := CompareRPM(tc.va, tc.ra, tc.vb, tc.rb); got != tc.want {
			t.Errorf("CompareRPM(%s-%s, %s-%s) = %d, want %d", tc.va, tc.ra, tc.vb, tc.rb, got, tc.want)
		}
		if got := CompareRPM(tc.vb, tc.rb, tc.va, tc.ra); got != -tc.want {
			t.Errorf("CompareRPM(%s-%s, %s-%s) = %d, want %d", tc.vb, tc.rb, tc.va, tc.ra, got, -tc.want)
		}
	}
}

func TestParseAptSimulate(t *testing.T) {
	for _, tc := range []struct {
		name    string
		in      string
		want    Pending
		wantErr bool
	}{
		// Counted independently: grep -c '^Inst' and grep -c '^Inst.*-security'.
		{"debian12 dist-upgrade", readTestdata(t, "apt-get-s-dist-upgrade.debian12.txt"), Pending{All: 124, Security: 77}, false},
		{"debian12 upgrade", readTestdata(t, "apt-get-s-upgrade.debian12.txt"), Pending{All: 124, Security: 77}, false},
		{"ubuntu origins", "Reading package lists...\n" +
			"Inst libssl3 [3.0.2-0ubuntu1.10] (3.0.2-0ubuntu1.12 Ubuntu:22.04/jammy-updates, Ubuntu:22.04/jammy-security [amd64])\n" +
			"Inst snapd [2.58] (2.61 Ubuntu:22.04/jammy-updates [amd64])\n" +
			"Conf libssl3 (3.0.2-0ubuntu1.12 Ubuntu:22.04/jammy-updates, Ubuntu:22.04/jammy-security [amd64])\n", Pending{All: 2, Security: 1}, false},
		{"nothing to do", "Reading package lists...\nBuilding dependency tree...\nReading state information...\nCalculating upgrade...\n0 upgraded, 0 newly installed, 0 to remove and 0 not upgraded.\n", Pending{}, false},
		{"not apt output", "E: Could not open lock file\n", Pending{}, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := ParseAptSimulate(tc.in)
			if (err != nil) != tc.wantErr {
				t.Fatalf("err = %v, want error %v", err, tc.wantErr)
			}
			if got != tc.want {
				t.Errorf("got %+v, want %+v", got, tc.want)
			}
		})
	}
}

func TestParseDNFCheckUpdate(t *testing.T) {
	for _, tc := range []struct {
		file string
		want int
	}{
		{"dnf-check-update.txt", 8},
		{"yum-check-update-wrapped.al2.txt", 3},
	} {
		got, err := ParseDNFCheckUpdate(readTestdata(t, tc.file))
		if err != nil || got != tc.want {
			t.Errorf("%s: got %d, %v; want %d", tc.file, got, err, tc.want)
		}
	}
}

func TestParseUpdateinfoSecurity(t *testing.T) {
	got, err := ParseUpdateinfoSecurity(readTestdata(t, "dnf-updateinfo-list-security.almalinux10.txt"))
	if err != nil || got != 6 {
		t.Errorf("got %d, %v; want 6 distinct packages", got, err)
	}
	got, err = ParseUpdateinfoSecurity("")
	if err != nil || got != 0 {
		t.Errorf("empty: got %d, %v", got, err)
	}
}

func TestParseNeedsRestarting(t *testing.T) {
	for _, tc := range []struct {
		file    string
		code    int
		want    bool
		wantErr bool
	}{
		{"needs-restarting-r.required.txt", 1, true, false},
		{"needs-restarting-r.not-required.txt", 0, false, false},
		{"dnf-needs-restarting.no-plugin.txt", 1, false, true},
		{"needs-restarting-r.required.txt", 2, false, true},
	} {
		got, err := ParseNeedsRestarting(readTestdata(t, tc.file), tc.code)
		if (err != nil) != tc.wantErr || got != tc.want {
			t.Errorf("%s exit %d: got %v, %v; want %v, error %v", tc.file, tc.code, got, err, tc.want, tc.wantErr)
		}
	}
}

func TestRunningIsLatest(t *testing.T) {
	deb12, err := ParseDpkgKernels(readTestdata(t, "dpkg-query-linux-image.debian12.txt"))
	if err != nil {
		t.Fatal(err)
	}
	if len(deb12) != 3 {
		t.Fatalf("debian12: %d kernels, want 3 (meta, removed and not-installed packages skipped): %+v", len(deb12), deb12)
	}
	ubu, err := ParseDpkgKernels(readTestdata(t, "dpkg-query-linux-image.ubuntu2204.txt"))
	if err != nil {
		t.Fatal(err)
	}
	al, err := ParseRPMKernels(readTestdata(t, "rpm-q-kernel.al2023.txt"))
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name    string
		running string
		ks      []Kernel
		rpm     bool
		want    bool
		wantErr bool
	}{
		// 6.1.0-18 sorts before 6.1.0-9 as a string, after it as a version.
		{"debian newest", "6.1.0-18-amd64", deb12, false, true, false},
		{"debian older", "6.1.0-10-amd64", deb12, false, false, false},
		{"debian removed", "6.1.0-7-amd64", deb12, false, false, false},
		{"ubuntu newest", "6.8.0-1021-aws", ubu, false, true, false},
		{"ubuntu older", "6.8.0-1018-aws", ubu, false, false, false},
		{"al2023 newest", "6.1.112-122.189.amzn2023.x86_64", al, true, true, false},
		{"al2023 older", "6.1.66-91.160.amzn2023.x86_64", al, true, false, false},
		{"no kernels", "6.1.0-18-amd64", nil, false, false, true},
	} {
		got, err := RunningIsLatest(tc.running, tc.ks, tc.rpm)
		if (err != nil) != tc.wantErr || got != tc.want {
			t.Errorf("%s: got %v, %v; want %v, error %v", tc.name, got, err, tc.want, tc.wantErr)
		}
	}
	if _, err := ParseDpkgKernels("garbage line\n"); err == nil {
		t.Error("dpkg-query garbage: no error")
	}
}

func TestParsePatchSummary(t *testing.T) {
	real := readTestdata(t, "patch-inventory-from-last-operation.ubuntu2004.json")
	s, err := ParsePatchSummary([]byte(real))
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]float64{"installed": 198, "installed_other": 1077, "installed_pending_reboot": 0,
		"installed_rejected": 0, "missing": 0, "failed": 0, "not_applicable": 10254}
	for k, v := range want {
		if s.States[k] != v {
			t.Errorf("state %s = %v, want %v", k, s.States[k], v)
		}
	}
	if s.Operation != "Install" || !s.End.Equal(time.Date(2021, 11, 2, 4, 17, 28, 0, time.UTC)) {
		t.Errorf("operation %q end %v", s.Operation, s.End)
	}
	for _, tc := range []struct{ name, in string }{
		{"not json", "{"},
		{"other type", strings.Replace(real, "AWS:PatchSummary", "AWS:ComplianceItem", 1)},
		{"other schema version", strings.Replace(real, `"SchemaVersion": "1.0"`, `"SchemaVersion": "2.0"`, 1)},
		{"count missing", strings.Replace(real, `"MissingCount"`, `"MissingCnt"`, 1)},
		{"count not a number", strings.Replace(real, `"FailedCount": "0"`, `"FailedCount": "none"`, 1)},
		{"bad end time", strings.Replace(real, `"OperationEndTime": "2021-11-02T04:17:28Z"`, `"OperationEndTime": "yesterday"`, 1)},
	} {
		if tc.in == real {
			t.Fatalf("%s: replacement did not apply", tc.name)
		}
		if _, err := ParsePatchSummary([]byte(tc.in)); err == nil {
			t.Errorf("%s: no error", tc.name)
		}
	}
}
