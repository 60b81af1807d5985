package main

import (
	"strings"
	"testing"

	"github.com/patchd/patchd/agent/config"
	"github.com/patchd/patchd/systemd"
)

// TestServiceInstallWritesPackagedUnit renders what `patchd service install`
// hands kardianos/service and compares it with the unit the packages ship:
// the same unit line for line, only ExecStart points at this binary.
func TestServiceInstallWritesPackagedUnit(t *testing.T) {
	cfg, err := serviceConfig(&config.Flags{File: "/etc/patch d/patchd.yaml"})
	if err != nil {
		t.Fatal(err)
	}
	script, _ := cfg.Option["SystemdScript"].(string)
	if script == "" {
		t.Fatal("service config has no SystemdScript: kardianos would write its default unit")
	}
	// kardianos renders the script with its template engine; a script
	// without actions renders to itself.
	if strings.Contains(script, "{{") {
		t.Fatalf("script has template actions, so its rendering differs from the text:\n%s", script)
	}
	want := strings.Split(systemd.Unit, "\n")
	got := strings.Split(script, "\n")
	if len(got) != len(want) {
		t.Fatalf("rendered unit has %d lines, the packaged one %d", len(got), len(want))
	}
	for i := range want {
		if strings.HasPrefix(want[i], "ExecStart=") {
			exe := strings.ReplaceAll(cfg.Executable, " ", `\x20`)
			if w := "ExecStart=" + exe + ` "run" "--config.file" "/etc/patch d/patchd.yaml"`; got[i] != w {
				t.Errorf("ExecStart:\n got %s\nwant %s", got[i], w)
			}
			continue
		}
		if got[i] != want[i] {
			t.Errorf("line %d differs from the packaged unit:\n got %q\nwant %q", i+1, got[i], want[i])
		}
	}
	for _, key := range []string{"KillMode=mixed", "TimeoutStopSec=", "ExecReload=", "WantedBy=multi-user.target"} {
		if !strings.Contains(script, "\n"+key) {
			t.Errorf("rendered unit lacks %s", key)
		}
	}
}

func TestUnitScriptEscapes(t *testing.T) {
	got, err := unitScript("[Service]\nExecStart=/usr/bin/patchd run\n", "/opt/my patchd/patchd", []string{"run", `a"b\c`, "50%", "$HOME"})
	if err != nil {
		t.Fatal(err)
	}
	want := "[Service]\nExecStart=/opt/my\\x20patchd/patchd \"run\" \"a\\\"b\\\\c\" \"50%%\" \"$$HOME\"\n"
	if got != want {
		t.Fatalf("got\n%s\nwant\n%s", got, want)
	}
	if _, err := unitScript("ExecStart=x\n", "/opt/{{Path}}/patchd", nil); err == nil || !strings.Contains(err.Error(), "{{") {
		t.Fatalf("a path that reads as a template action: err %v", err)
	}
}
