package imds

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestDecide(t *testing.T) {
	a := Identity{"arn:aws:iam::1:instance-profile/a", "AIPAA", "role-a"}
	b := Identity{"arn:aws:iam::1:instance-profile/b", "AIPAB", "role-b"}
	aRenamed := Identity{a.InstanceProfileArn, a.InstanceProfileID, "role-a2"}
	aNewID := Identity{a.InstanceProfileArn, "AIPAX", a.Role}
	none := Identity{}
	now := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)

	for _, tc := range []struct {
		name    string
		prev    State
		known   bool
		cur     Identity
		changed bool
		why     string
		next    State
	}{
		{"first answer is a baseline", State{}, false, a, false, "", State{a, true, now}},
		{"first answer none is a baseline", State{}, false, none, false, "", State{none, false, now}},
		{"same profile", State{a, true, now.Add(-time.Hour)}, true, a, false, "", State{a, true, now.Add(-time.Hour)}},
		{"profile replaced", State{a, true, now}, true, b, true, "instance profile changed", State{b, true, now}},
		{"profile recreated, same ARN new id", State{a, true, now}, true, aNewID, true, "instance profile changed", State{aNewID, true, now}},
		{"role renamed", State{a, true, now}, true, aRenamed, true, "role changed from role-a to role-a2", State{aRenamed, true, now}},
		{"attached where none", State{none, false, now}, true, a, true, "attached where there was none", State{a, true, now}},
		{"detached is not a change", State{a, true, now.Add(-time.Hour)}, true, none, false, "", State{a, false, now}},
		{"none stays none", State{none, false, now.Add(-time.Hour)}, true, none, false, "", State{none, false, now.Add(-time.Hour)}},
		{"same profile back after detach", State{a, false, now.Add(-time.Hour)}, true, a, false, "", State{a, true, now}},
		{"other profile after detach", State{a, false, now}, true, b, true, "instance profile changed", State{b, true, now}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			next, changed, why := Decide(tc.prev, tc.known, tc.cur, now)
			if changed != tc.changed || !strings.Contains(why, tc.why) || (tc.why == "" && why != "") {
				t.Errorf("changed=%v why=%q, want %v %q", changed, why, tc.changed, tc.why)
			}
			if next != tc.next {
				t.Errorf("next state %+v, want %+v", next, tc.next)
			}
		})
	}
}

func TestStateFile(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, StateFileName)
	if _, ok, err := LoadState(path); ok || err != nil {
		t.Fatalf("missing file: ok=%v err=%v, want not ok and no error", ok, err)
	}
	want := State{Identity{"arn:p", "AIPA", "r"}, true, time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)}
	if err := SaveState(path, want); err != nil {
		t.Fatal(err)
	}
	got, ok, err := LoadState(path)
	if err != nil || !ok || got != want {
		t.Fatalf("LoadState = %+v %v %v, want %+v", got, ok, err, want)
	}
	if err := os.WriteFile(path, []byte("{garbage"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, _, err := LoadState(path); err == nil || !strings.Contains(err.Error(), path) {
		t.Fatalf("damaged file: err %v, want one naming %s", err, path)
	}
}
