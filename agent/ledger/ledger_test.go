package ledger

import (
	"context"
	"os"
	"path/filepath"
	"reflect"
	"strconv"
	"testing"
)

func TestParse(t *testing.T) {
	for _, tc := range []struct {
		name string
		in   string
		want []Package
	}{
		{"dpkg", "bash\t5.2-1\tamd64\nlibc6\t2.36-9\tamd64\nlibc6\t2.36-9\ti386\n",
			[]Package{{"bash", "5.2-1", "amd64"}, {"libc6", "2.36-9", "amd64"}, {"libc6", "2.36-9", "i386"}}},
		{"dpkg config-files only", "gone\t\tamd64\nkept\t1\tall\n", []Package{{"kept", "1", "all"}}},
		{"rpm with epoch", "openssl\t1:3.0.8-1.amzn2023\tx86_64\n", []Package{{"openssl", "1:3.0.8-1.amzn2023", "x86_64"}}},
		{"garbage", "no tabs here\n\n\t\t\n", nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := Parse([]byte(tc.in)); !reflect.DeepEqual(got, tc.want) {
				t.Errorf("Parse = %#v, want %#v", got, tc.want)
			}
		})
	}
}

func TestDiff(t *testing.T) {
	before := []Package{{"a", "1", "x"}, {"b", "1", "x"}, {"c", "1", "x"}, {"m", "1", "i386"}}
	after := []Package{{"a", "1", "x"}, {"b", "2", "x"}, {"d", "1", "x"}, {"m", "1", "amd64"}, {"m", "1", "i386"}}
	got := Diff(before, after)
	want := Changes{
		Installed: []Package{{"d", "1", "x"}, {"m", "1", "amd64"}},
		Upgraded:  []Upgrade{{Name: "b", Arch: "x", From: "1", To: "2"}},
		Removed:   []Package{{"c", "1", "x"}},
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("Diff = %#v, want %#v", got, want)
	}
	if c := got.Counts(); c["installed"] != 2 || c["upgraded"] != 1 || c["removed"] != 1 {
		t.Errorf("Counts = %v", c)
	}
}

func TestCommandSnapshot(t *testing.T) {
	dir := t.TempDir()
	script := filepath.Join(dir, "q")
	if err := os.WriteFile(script, []byte("#!/bin/sh\nprintf 'zz\\t1\\tall\\naa\\t2\\tall\\n'\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	got, err := Command{Argv: []string{script}}.Snapshot(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if want := []Package{{"aa", "2", "all"}, {"zz", "1", "all"}}; !reflect.DeepEqual(got, want) {
		t.Errorf("Snapshot = %v, want %v", got, want)
	}
	if _, err := (Command{Argv: []string{filepath.Join(dir, "missing")}}).Snapshot(context.Background()); err == nil {
		t.Error("a missing query command must be an error")
	}
}

func TestAppendRotates(t *testing.T) {
	for _, tc := range []struct {
		name      string
		max, n    int
		wantFirst int
		wantLen   int
	}{
		{"under the bound", 10, 3, 0, 3},
		{"rotated", 5, 12, 7, 5},
		{"bound of one", 1, 4, 3, 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), FileName)
			for i := 0; i < tc.n; i++ {
				if err := Append(path, Entry{CycleID: strconv.Itoa(i), Result: "success"}, tc.max); err != nil {
					t.Fatal(err)
				}
			}
			got, bad, err := Read(path, 0)
			if err != nil || bad != 0 {
				t.Fatalf("Read: %v, %d bad", err, bad)
			}
			if len(got) != tc.wantLen || got[0].CycleID != strconv.Itoa(tc.wantFirst) {
				t.Errorf("got %d entries starting at %q, want %d starting at %d", len(got), got[0].CycleID, tc.wantLen, tc.wantFirst)
			}
			last, _, _ := Read(path, 2)
			if len(last) != min(2, tc.wantLen) || last[len(last)-1].CycleID != strconv.Itoa(tc.n-1) {
				t.Errorf("Read(2) = %v", last)
			}
			fi, err := os.Stat(path)
			if err != nil || fi.Mode().Perm() != 0o600 {
				t.Errorf("ledger mode: %v %v", fi.Mode(), err)
			}
		})
	}
}

func TestReadSkipsBadLines(t *testing.T) {
	path := filepath.Join(t.TempDir(), FileName)
	if err := os.WriteFile(path, []byte("{\"cycle_id\":\"a\"}\nnot json\n\n{\"cycle_id\":\"b\"}"), 0o600); err != nil {
		t.Fatal(err)
	}
	got, bad, err := Read(path, 0)
	if err != nil || bad != 1 || len(got) != 2 || got[1].CycleID != "b" {
		t.Errorf("Read = %v, %d bad, %v", got, bad, err)
	}
	if got, _, err := Read(filepath.Join(t.TempDir(), "none"), 0); err != nil || got != nil {
		t.Errorf("missing ledger: %v %v", got, err)
	}
}
