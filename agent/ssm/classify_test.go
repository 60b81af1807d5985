package ssm_test

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/patchd/patchd/agent/ssm"
)

func readSample(t *testing.T, name string) *ssm.DocumentState {
	t.Helper()
	s, err := ssm.ReadState(filepath.Join("testdata", name))
	if err != nil {
		t.Fatalf("sample %s: %v", name, err)
	}
	return s
}

func TestClassifySamples(t *testing.T) {
	for _, tc := range []struct {
		file       string
		extra      []string
		isPatch    bool
		op         string
		opensCycle bool
		reason     string // substring
	}{
		{"pending-run-patch-baseline-install.json", nil, true, "Install", true, "runCommand"},
		{"current-run-patch-baseline-install-inprogress.json", nil, true, "Install", true, ""},
		{"current-run-patch-baseline-install-successandreboot.json", nil, true, "Install", true, ""},
		{"current-run-patch-baseline-install-resumed.json", nil, true, "Install", true, ""},
		{"current-run-patch-baseline-scan.json", nil, true, "Scan", false, "changes nothing"},
		{"current-run-patch-baseline-association-install.json", nil, true, "Install", true, ""},
		{"current-run-patch-baseline-with-hooks-modelled.json", nil, true, "Install", true, "step PatchInstall Operation parameter"},
		{"current-apply-ansible-playbooks-check-true.json", nil, true, "Check", false, "dry run"},
		{"current-apply-ansible-playbooks-check-false.json", nil, true, "Apply", true, ""},
		{"current-run-shell-script.json", nil, false, "", false, "not a patch document"},
		{"current-run-shell-script.json", []string{"AWS-Run*Script"}, true, "Install", true, "treated as Install"},
		{"current-custom-patch-document.json", nil, false, "", false, "not a patch document"},
		{"current-custom-patch-document.json", []string{"Acme-*"}, true, "Install", true, "operation not found in step properties; treated as Install"},
		{"current-custom-patch-document.json", []string{"[", "Other"}, false, "", false, ""},
	} {
		t.Run(tc.file+strings.Join(tc.extra, ","), func(t *testing.T) {
			got := ssm.Classify(readSample(t, tc.file), tc.extra)
			if got.IsPatch != tc.isPatch || got.Operation != tc.op || got.OpensCycle != tc.opensCycle {
				t.Errorf("Classify = %+v, want patch %v op %q opens %v", got, tc.isPatch, tc.op, tc.opensCycle)
			}
			if !strings.Contains(got.Reason, tc.reason) {
				t.Errorf("Reason %q lacks %q", got.Reason, tc.reason)
			}
		})
	}
}

// Edits of one sample cover the forms the operation can take.
func TestClassifyOperationForms(t *testing.T) {
	base := func() *ssm.DocumentState { return readSample(t, "current-run-patch-baseline-install-inprogress.json") }
	setLinux := func(s *ssm.DocumentState, lines ...any) {
		for i := range s.InstancePluginsInformation {
			p := &s.InstancePluginsInformation[i]
			p.Configuration.Properties = map[string]any{"runCommand": []any{"true"}}
			if p.Id == "PatchLinux" {
				p.Configuration.Properties = map[string]any{"runCommand": lines}
			}
		}
	}
	for _, tc := range []struct {
		name string
		edit func(*ssm.DocumentState)
		op   string
		why  string
	}{
		{"linux call split over lines", func(s *ssm.DocumentState) {
			setLinux(s, `    common_startup_entrance.execute("os_selector", "PatchLinux", "",\`, `            "Scan", "", \`, `            "NoReboot", "")`)
		}, "Scan", "runCommand"},
		{"linux call on one line", func(s *ssm.DocumentState) {
			setLinux(s, `common_startup_entrance.execute("os_selector", "PatchLinux", "", "Install", "", "RebootIfNeeded", "")`)
		}, "Install", "runCommand"},
		{"argument moved", func(s *ssm.DocumentState) {
			setLinux(s, `common_startup_entrance.execute("os_selector", "PatchLinux", "Scan")`)
		}, "Scan", "runCommand"},
		{"runCommand as one string", func(s *ssm.DocumentState) {
			for i := range s.InstancePluginsInformation {
				s.InstancePluginsInformation[i].Configuration.Properties = map[string]any{"runCommand": "Invoke-PatchBaselineOperation -Operation Scan"}
			}
		}, "Scan", "runCommand"},
		{"windows updates action", func(s *ssm.DocumentState) {
			s.DocumentInformation.DocumentName = "AWS-InstallWindowsUpdates"
			for i := range s.InstancePluginsInformation {
				s.InstancePluginsInformation[i].Configuration.Properties = map[string]any{"runCommand": []any{"Install-WindowsUpdates -Action 'Scan' -AllowReboot True"}}
			}
		}, "Scan", "runCommand"},
		{"operation as a map parameter", func(s *ssm.DocumentState) {
			for i := range s.InstancePluginsInformation {
				s.InstancePluginsInformation[i].Configuration.Properties = map[string]any{"documentParameters": map[string]any{"Operation": []any{"Scan"}}}
			}
		}, "Scan", "Operation parameter"},
		{"scan step before an install step", func(s *ssm.DocumentState) {
			s.InstancePluginsInformation[0].Configuration.Properties = map[string]any{"documentParameters": `{"Operation":"Scan"}`}
			s.InstancePluginsInformation[2].Configuration.Properties = map[string]any{"runCommand": []any{"Invoke-PatchBaselineOperation -Operation Scan"}}
		}, "Install", "step PatchLinux runCommand"},
		{"every step scans", func(s *ssm.DocumentState) {
			for i := range s.InstancePluginsInformation {
				s.InstancePluginsInformation[i].Configuration.Properties = map[string]any{"documentParameters": `{"Operation":"Scan","RebootOption":"NoReboot"}`}
			}
		}, "Scan", "step PatchWindows Operation parameter"},
		{"nothing to read", func(s *ssm.DocumentState) {
			for i := range s.InstancePluginsInformation {
				s.InstancePluginsInformation[i].Configuration.Properties = nil
			}
		}, "Install", "treated as Install"},
		{"shared document ARN", func(s *ssm.DocumentState) {
			s.DocumentInformation.DocumentName = "arn:aws:ssm:eu-west-1:123456789012:document/AWS-RunPatchBaseline"
		}, "Install", "runCommand"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := base()
			tc.edit(s)
			got := ssm.Classify(s, nil)
			if !got.IsPatch || got.Operation != tc.op || got.OpensCycle != (tc.op == "Install") || !strings.Contains(got.Reason, tc.why) {
				t.Errorf("Classify = %+v, want %s (%s)", got, tc.op, tc.why)
			}
		})
	}
}

func TestClassifyAnsibleCheckOnlyFromTheCheckLine(t *testing.T) {
	// The InstallDependencies test has the same form as the Check test; only
	// the one followed by --check counts.
	s := readSample(t, "current-apply-ansible-playbooks-check-false.json")
	if got := ssm.Classify(s, nil); got.Operation != "Apply" {
		t.Fatalf("Check=False with InstallDependencies=True: %+v", got)
	}
	for i := range s.InstancePluginsInformation {
		s.InstancePluginsInformation[i].Configuration.Properties = nil
	}
	if got := ssm.Classify(s, nil); got.Operation != "Apply" || !got.OpensCycle || !strings.Contains(got.Reason, "treated as Apply") {
		t.Fatalf("no script: %+v", got)
	}
}

func TestParseState(t *testing.T) {
	for _, tc := range []struct {
		file  string
		empty bool
		ok    bool
	}{
		{"current-run-patch-baseline-install-successandreboot.json", false, true},
		{"truncated.json", false, false},
		{"not-json.txt", false, false},
	} {
		data, err := os.ReadFile(filepath.Join("testdata", tc.file))
		if err != nil {
			t.Fatal(err)
		}
		_, err = ssm.ParseState(data)
		if (err == nil) != tc.ok {
			t.Errorf("%s: err %v, want ok %v", tc.file, err, tc.ok)
		}
	}
	if _, err := ssm.ParseState([]byte(" \n")); !errors.Is(err, ssm.ErrEmptyState) {
		t.Errorf("blank file: %v, want ErrEmptyState", err)
	}
	s := readSample(t, "current-run-patch-baseline-install-successandreboot.json")
	di := s.DocumentInformation
	if di.DocumentStatus != "SuccessAndReboot" || di.ProcInfo.Pid == 0 || di.MessageID != "aws.ssm."+di.CommandID+"."+di.InstanceID {
		t.Errorf("document information: %+v", di)
	}
	st := s.PluginStatuses()
	if st["PatchLinux"] != "SuccessAndReboot" || st["PatchWindows"] != "Skipped" || len(st) != 3 {
		t.Errorf("plugin statuses %v", st)
	}
	// The agent's marshalling round-trips: what ssmsim writes is what the
	// agent writes (same keys, two-space indent, no trailing newline).
	raw, _ := os.ReadFile(filepath.Join("testdata", "current-run-patch-baseline-install-successandreboot.json"))
	again, err := s.Marshal()
	if err != nil || string(again) != string(raw) {
		t.Errorf("re-marshalled sample differs from the file (err %v)", err)
	}
}
