package hooks

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

const okScript = "#!/bin/sh\nexit 0\n"

func TestDiscoverOrderAndSkips(t *testing.T) {
	root := copyTree(t, "testdata/order")
	hs, err := Discover(root, PrePatch)
	if err != nil {
		t.Fatal(err)
	}
	var runnable []string
	skipped := map[string]string{}
	for _, h := range hs {
		switch h.State {
		case Runnable:
			runnable = append(runnable, h.Name)
		case Skipped:
			skipped[h.Name] = h.Reason
		default:
			t.Errorf("%s: %s (%s), want runnable or skipped", h.Name, h.State, h.Reason)
		}
	}
	want := []string{"10-first", "20-fails", "30-third", "9-sorts-after-30"}
	if strings.Join(runnable, " ") != strings.Join(want, " ") {
		t.Errorf("runnable = %v, want %v", runnable, want)
	}
	for name, reason := range map[string]string{
		"40-old.bak": ".bak", "41-edit~": "~", "42-conf.dpkg-dist": ".dpkg-dist",
		"43-conf.rpmnew": ".rpmnew", "44-conf.dpkg-old": ".dpkg-old", "45-x.rpmsave": ".rpmsave",
		"46-x.disabled": ".disabled", "47-x.swp": ".swp", ".48-hidden": "hidden",
		"49-x.dpkg-new": ".dpkg-new", "50-not-executable": "not executable",
	} {
		if got, ok := skipped[name]; !ok || !strings.Contains(got, reason) {
			t.Errorf("%s: skipped=%v reason %q, want reason containing %q", name, ok, got, reason)
		}
	}
}

func TestDiscoverMissingDirs(t *testing.T) {
	for _, root := range []string{filepath.Join(t.TempDir(), "absent"), t.TempDir()} {
		hs, err := Discover(root, PostPatch)
		if err != nil || len(hs) != 0 {
			t.Errorf("Discover(%s) = %v, %v; want no hooks and no error", root, hs, err)
		}
	}
	if _, err := Discover(t.TempDir(), Phase("during-patch")); err == nil {
		t.Error("unknown phase accepted")
	}
}

func TestDiscoverUnreadableDir(t *testing.T) {
	root := t.TempDir()
	// A file where the phase directory should be cannot be listed.
	if err := os.WriteFile(filepath.Join(root, "pre-patch"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := Discover(root, PrePatch); err == nil || !strings.Contains(err.Error(), "pre-patch") {
		t.Errorf("err = %v, want one naming the directory", err)
	}
}

// TestDiscoverRefusals builds each unsafe case at test time (git keeps no
// owners or write bits) and checks it is refused with a reason that says
// how to fix it.
func TestDiscoverRefusals(t *testing.T) {
	outside := t.TempDir()
	goodTarget := filepath.Join(outside, "good")
	writeHook(t, goodTarget, okScript, 0o755)
	wwTarget := filepath.Join(outside, "world-writable")
	writeHook(t, wwTarget, okScript, 0o757)
	wwDir := filepath.Join(outside, "open")
	if err := os.Mkdir(wwDir, 0o755); err != nil {
		t.Fatal(err)
	}
	writeHook(t, filepath.Join(wwDir, "inside"), okScript, 0o755)
	if err := os.Chmod(wwDir, 0o777); err != nil {
		t.Fatal(err)
	}

	cases := []struct {
		name   string
		setup  func(t *testing.T, dir string) // dir is the phase directory
		state  State
		reason string
		root   bool // needs root
	}{
		{name: "plain", setup: func(t *testing.T, dir string) { writeHook(t, filepath.Join(dir, "plain"), okScript, 0o755) }, state: Runnable},
		{name: "world-writable", setup: func(t *testing.T, dir string) {
			writeHook(t, filepath.Join(dir, "world-writable"), okScript, 0o757)
		}, state: Refused, reason: "world-writable: chmod o-w"},
		{name: "group-writable", setup: func(t *testing.T, dir string) {
			writeHook(t, filepath.Join(dir, "group-writable"), okScript, 0o775)
		}, state: Refused, reason: "group-writable: chmod g-w"},
		{name: "foreign-owner", root: true, setup: func(t *testing.T, dir string) {
			p := filepath.Join(dir, "foreign-owner")
			writeHook(t, p, okScript, 0o755)
			if err := os.Chown(p, 65534, 65534); err != nil {
				t.Fatal(err)
			}
		}, state: Refused, reason: "owned by uid 65534"},
		{name: "link-good", setup: func(t *testing.T, dir string) {
			if err := os.Symlink(goodTarget, filepath.Join(dir, "link-good")); err != nil {
				t.Fatal(err)
			}
		}, state: Runnable},
		{name: "link-refused", setup: func(t *testing.T, dir string) {
			if err := os.Symlink(wwTarget, filepath.Join(dir, "link-refused")); err != nil {
				t.Fatal(err)
			}
		}, state: Refused, reason: "symlink target file " + wwTarget + " is world-writable"},
		{name: "link-unsafe-dir", setup: func(t *testing.T, dir string) {
			if err := os.Symlink(filepath.Join(wwDir, "inside"), filepath.Join(dir, "link-unsafe-dir")); err != nil {
				t.Fatal(err)
			}
		}, state: Refused, reason: "directory " + wwDir + " is world-writable"},
		{name: "link-dangling", setup: func(t *testing.T, dir string) {
			if err := os.Symlink(filepath.Join(outside, "nothing"), filepath.Join(dir, "link-dangling")); err != nil {
				t.Fatal(err)
			}
		}, state: Refused, reason: "cannot be resolved"},
		{name: "subdir", setup: func(t *testing.T, dir string) {
			if err := os.Mkdir(filepath.Join(dir, "subdir"), 0o755); err != nil {
				t.Fatal(err)
			}
		}, state: Skipped, reason: "directory"},
		{name: "world-writable.bak", setup: func(t *testing.T, dir string) {
			writeHook(t, filepath.Join(dir, "world-writable.bak"), okScript, 0o777)
		}, state: Skipped, reason: ".bak"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if tc.root && os.Geteuid() != 0 {
				t.Skip("changing a file's owner needs root")
			}
			root := newRoot(t)
			tc.setup(t, filepath.Join(root, "pre-patch"))
			hs, err := Discover(root, PrePatch)
			if err != nil {
				t.Fatal(err)
			}
			if len(hs) != 1 {
				t.Fatalf("got %d hooks, want 1: %+v", len(hs), hs)
			}
			h := hs[0]
			if h.State != tc.state || !strings.Contains(h.Reason, tc.reason) {
				t.Errorf("%s: %s %q, want %s with reason containing %q", h.Name, h.State, h.Reason, tc.state, tc.reason)
			}
		})
	}
}

// TestDiscoverUnsafeDirectories: a safe hook inside an unsafe directory is
// refused, whichever directory of the chain is unsafe.
func TestDiscoverUnsafeDirectories(t *testing.T) {
	cases := []struct {
		name   string
		dir    string // relative to root; "" is the root itself
		mode   os.FileMode
		reason string
	}{
		{"world-writable phase dir", "pre-patch", 0o777, "is world-writable"},
		{"group-writable phase dir", "pre-patch", 0o775, "is group-writable"},
		{"world-writable root", "", 0o757, "is world-writable"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			root := newRoot(t)
			writeHook(t, filepath.Join(root, "pre-patch", "10-ok"), okScript, 0o755)
			d := filepath.Join(root, tc.dir)
			if err := os.Chmod(d, tc.mode); err != nil {
				t.Fatal(err)
			}
			hs, err := Discover(root, PrePatch)
			if err != nil {
				t.Fatal(err)
			}
			if len(hs) != 1 || hs[0].State != Refused || !strings.Contains(hs[0].Reason, tc.reason) ||
				!strings.Contains(hs[0].Reason, "chmod") {
				t.Errorf("got %+v, want refused: %s", hs, tc.reason)
			}
		})
	}
	t.Run("foreign-owned phase dir", func(t *testing.T) {
		if os.Geteuid() != 0 {
			t.Skip("changing a directory's owner needs root")
		}
		root := newRoot(t)
		writeHook(t, filepath.Join(root, "pre-patch", "10-ok"), okScript, 0o755)
		if err := os.Chown(filepath.Join(root, "pre-patch"), 65534, 65534); err != nil {
			t.Fatal(err)
		}
		hs, _ := Discover(root, PrePatch)
		if len(hs) != 1 || hs[0].State != Refused || !strings.Contains(hs[0].Reason, "owned by uid 65534") {
			t.Errorf("got %+v, want refused for its directory's owner", hs)
		}
	})
}
