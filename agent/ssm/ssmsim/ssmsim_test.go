package ssmsim_test

import (
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/patchd/patchd/agent/ssm"
	"github.com/patchd/patchd/agent/ssm/ssmsim"
)

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

func mode(t *testing.T, p string) os.FileMode {
	t.Helper()
	fi, err := os.Stat(p)
	must(t, err)
	return fi.Mode().Perm()
}

func inode(t *testing.T, p string) uint64 {
	t.Helper()
	fi, err := os.Stat(p)
	must(t, err)
	return uint64(fi.Sys().(*syscall.Stat_t).Ino)
}

func TestAgentLayoutModesAndMoves(t *testing.T) {
	root := t.TempDir()
	a := ssmsim.New(root, "i-0a1b2c3d4e5f60718", filepath.Join(root, "logs"))
	must(t, os.MkdirAll(a.StateDir("completed"), 0o700))
	must(t, os.WriteFile(filepath.Join(a.StateDir("completed"), "old"), nil, 0o600))
	must(t, a.Init())
	for _, f := range []ssm.Folder{ssm.Pending, ssm.Current, ssm.Corrupt} {
		if m := mode(t, a.StateDir(f)); m != 0o700 {
			t.Errorf("%s/ mode %v, want 0700", f, m)
		}
	}
	if _, err := os.Stat(filepath.Join(a.StateDir("completed"), "old")); !os.IsNotExist(err) {
		t.Errorf("the legacy completed/ folder was not emptied at start")
	}

	d, err := a.Submit(ssmsim.RunPatchBaseline("Install", "RebootIfNeeded"))
	must(t, err)
	pending := filepath.Join(a.StateDir(ssm.Pending), d.ID())
	if m := mode(t, pending); m != 0o600 {
		t.Errorf("state file mode %v, want 0600", m)
	}
	ino := inode(t, pending)
	must(t, d.Start())
	cur := filepath.Join(a.StateDir(ssm.Current), d.ID())
	if _, err := os.Stat(pending); !os.IsNotExist(err) || inode(t, cur) != ino {
		t.Errorf("start must rename pending/ to current/ (same inode): pending err %v", err)
	}
	must(t, d.RunStep(""))
	must(t, d.RequestReboot(""))
	// A later invocation (the CLI) finds the document by its id.
	again, err := a.Open(d.ID())
	must(t, err)
	if again.Folder != ssm.Current || again.State.DocumentInformation.DocumentStatus != ssm.StatusSuccessAndReboot {
		t.Fatalf("reopened: folder %s status %s", again.Folder, again.State.DocumentInformation.DocumentStatus)
	}
	must(t, again.Resume())
	must(t, again.Finish(""))
	if inode(t, filepath.Join(a.OrchestrationRoot(), d.ID(), "awsrunShellScript", "PatchLinux")) == 0 {
		t.Errorf("no orchestration folder")
	}
	if _, err := os.Stat(cur); !os.IsNotExist(err) {
		t.Errorf("finish must delete the state file: %v", err)
	}
	if _, err := a.Open(d.ID()); err == nil {
		t.Errorf("a finished document can still be opened")
	}
	stdout, err := os.ReadFile(filepath.Join(a.OrchestrationRoot(), d.ID(), "awsrunShellScript", "PatchLinux", "stdout"))
	if err != nil || len(stdout) == 0 {
		t.Errorf("step stdout kept after the end: %q %v", stdout, err)
	}

	c, err := a.Submit(ssmsim.RunShellScript("true"))
	must(t, err)
	must(t, c.Start())
	must(t, c.Corrupt())
	if _, err := os.Stat(filepath.Join(a.StateDir(ssm.Corrupt), c.ID())); err != nil {
		t.Errorf("corrupt: %v", err)
	}

	log, err := os.ReadFile(filepath.Join(root, "logs", ssmsim.AgentLogName))
	must(t, err)
	mid := d.State.DocumentInformation.MessageID
	for _, want := range []string{
		"document " + mid + " submission started",
		"Running plugin aws:runShellScript PatchLinux",
		"document " + mid + " requested reboot, need to resume",
		"successfully requested a reboot",
		"Found in-progress document - " + d.ID(),
		"command: " + mid + " complete",
		"execution of " + mid + " is over",
	} {
		if !strings.Contains(string(log), want) {
			t.Errorf("agent log lacks %q", want)
		}
	}
}

func TestSaveAtEndOnlyWritesWhereTheAgentWrites(t *testing.T) {
	a := ssmsim.New(t.TempDir(), "i-0a1b2c3d4e5f60718", "")
	a.SaveAtEndOnly = true
	must(t, a.Init())
	d, err := a.Submit(ssmsim.RunPatchBaseline("Install", "NoReboot"))
	must(t, err)
	must(t, d.Start())
	read := func() *ssm.DocumentState {
		s, err := ssm.ReadState(d.Path())
		must(t, err)
		return s
	}
	if read().DocumentInformation.ProcInfo.Pid == 0 {
		t.Errorf("start does not record the worker process")
	}
	must(t, d.RunStep(""))
	if st := read().PluginStatuses(); st["PatchLinux"] != "" {
		t.Errorf("a step start was written: %v", st)
	}
	must(t, d.RequestReboot(""))
	if s := read(); s.DocumentInformation.DocumentStatus != ssm.StatusSuccessAndReboot {
		t.Errorf("the reboot request was not written: %s", s.DocumentInformation.DocumentStatus)
	}
}

var (
	lineNew = regexp.MustCompile(`^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d{4} (INFO|ERROR) \[amazon-ssm-agent\] line \d+$`)
	lineOld = regexp.MustCompile(`^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d (INFO|ERROR) \[amazon-ssm-agent\] line \d+$`)
	lineErr = regexp.MustCompile(`^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d{4} ERROR \[\w+ @ [\w.]+\.go\.\d+\] \[amazon-ssm-agent\] line \d+$`)
)

func TestLogFormatAndSeelogRotation(t *testing.T) {
	for _, tc := range []struct {
		name string
		old  bool
		re   *regexp.Regexp
	}{{"since 3.3.808", false, lineNew}, {"older agents", true, lineOld}} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			l := ssmsim.NewLog(dir)
			l.OldFormat = tc.old
			l.Now = func() time.Time { return time.Date(2024, 10, 21, 3, 0, 0, 123456789, time.UTC) }
			l.MaxSize = 200 // a few lines per file
			for i := range 40 {
				level := "INFO"
				if i%10 == 0 {
					level = "ERROR"
				}
				must(t, l.Line(level, "[amazon-ssm-agent]", "line "+string(rune('0'+i/10))+string(rune('0'+i%10))))
			}
			entries, err := os.ReadDir(dir)
			must(t, err)
			var rolled []string
			for _, e := range entries {
				if strings.HasPrefix(e.Name(), ssmsim.AgentLogName+".") {
					rolled = append(rolled, e.Name())
				}
			}
			// Five kept, the newest with the highest numbers.
			if len(rolled) != 5 {
				t.Fatalf("rolled files %v, want 5", rolled)
			}
			for _, name := range append(rolled, ssmsim.AgentLogName) {
				data, err := os.ReadFile(filepath.Join(dir, name))
				must(t, err)
				if len(data) > 200 {
					t.Errorf("%s has %d bytes, more than MaxSize", name, len(data))
				}
				for _, line := range strings.Split(strings.TrimSuffix(string(data), "\n"), "\n") {
					if !tc.re.MatchString(line) {
						t.Errorf("%s: line %q not in seelog's format", name, line)
					}
				}
			}
			if _, err := os.Stat(filepath.Join(dir, ssmsim.AgentLogName+".1")); !os.IsNotExist(err) {
				t.Errorf("the oldest rolled file was not deleted")
			}
			// Rotate renames; the file comes back only with the next line.
			must(t, l.Rotate())
			if _, err := os.Stat(filepath.Join(dir, ssmsim.AgentLogName)); !os.IsNotExist(err) {
				t.Errorf("the log exists right after rotation: %v", err)
			}
			must(t, l.Rotate()) // nothing to roll: no error, no empty .N
			must(t, l.Line("INFO", "[amazon-ssm-agent]", "line 99"))
			if _, err := os.Stat(filepath.Join(dir, ssmsim.AgentLogName)); err != nil {
				t.Errorf("the next line does not re-create the log: %v", err)
			}
			if !tc.old {
				data, err := os.ReadFile(filepath.Join(dir, ssmsim.ErrorsLogName))
				must(t, err)
				for _, line := range strings.Split(strings.TrimSuffix(string(data), "\n"), "\n") {
					if !lineErr.MatchString(line) {
						t.Errorf("errors.log line %q not in seelog's error format", line)
					}
				}
			}
		})
	}
}

// With the agent's orchestration clean-up configured, the document worker
// logs the final status and deletes the orchestration folder before the
// final write; by default it keeps the folder and logs nothing of the kind.
func TestOrchestrationCleanup(t *testing.T) {
	for _, tc := range []struct {
		setting, status string
		cleaned         bool
	}{
		{"", ssm.StatusFailed, false},
		{"clean-success", ssm.StatusFailed, false},
		{"clean-success", ssm.StatusSuccess, true},
		{"clean-success-failed", ssm.StatusFailed, true},
	} {
		root, logs := t.TempDir(), t.TempDir()
		a := ssmsim.New(root, "i-0123456789abcdef0", logs)
		a.OrchestrationCleanup = tc.setting
		must(t, a.Init())
		d, err := a.Submit(ssmsim.RunPatchBaseline("Install", "NoReboot"))
		must(t, err)
		must(t, d.Run(tc.status, false, nil))
		orch := d.State.IOConfig.OrchestrationDirectory
		log, _ := os.ReadFile(filepath.Join(logs, "amazon-ssm-agent.log"))
		line := "orchestration cleanup started for the command with status " + tc.status + " - deleting orchestration directory: " + orch
		_, statErr := os.Stat(orch)
		if got := strings.Contains(string(log), line); got != tc.cleaned || os.IsNotExist(statErr) != tc.cleaned {
			t.Errorf("%q, %s: clean-up line logged %v, folder gone %v; want %v", tc.setting, tc.status, got, os.IsNotExist(statErr), tc.cleaned)
		}
	}
}
