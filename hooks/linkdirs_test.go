package hooks

import (
	"fmt"
	"io/fs"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// A phase directory that is a symlink into a world-writable, non-sticky
// directory is refused: anyone could re-point it (at /usr/sbin, say).
func TestSymlinkedPhaseDirIntoWritableDirIsRefused(t *testing.T) {
	outside := t.TempDir()
	open := filepath.Join(outside, "open")
	target := filepath.Join(open, "pre-patch")
	if err := os.MkdirAll(target, 0o755); err != nil {
		t.Fatal(err)
	}
	writeHook(t, filepath.Join(target, "10-ok"), okScript, 0o755)
	if err := os.Chmod(open, 0o777); err != nil {
		t.Fatal(err)
	}
	root := filepath.Join(t.TempDir(), "hooks.d")
	if err := os.Mkdir(root, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(target, filepath.Join(root, "pre-patch")); err != nil {
		t.Fatal(err)
	}
	hs, err := Discover(root, PrePatch)
	if err != nil {
		t.Fatal(err)
	}
	want := "directory " + open + " is world-writable"
	if len(hs) != 1 || hs[0].State != Refused || !strings.Contains(hs[0].Reason, want) {
		t.Fatalf("got %+v, want the hook refused: %s", hs, want)
	}
	if r := CheckPhaseDir(root, PrePatch); !strings.Contains(r, want) {
		t.Fatalf("CheckPhaseDir = %q, want %q", r, want)
	}
	// The same through a second link that lives in the open directory.
	if err := os.Chmod(open, 0o755); err != nil {
		t.Fatal(err)
	}
	hop := filepath.Join(open, "hop")
	if err := os.Symlink(target, hop); err != nil {
		t.Fatal(err)
	}
	if err := os.Remove(filepath.Join(root, "pre-patch")); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(hop, filepath.Join(root, "pre-patch")); err != nil {
		t.Fatal(err)
	}
	if r := CheckPhaseDir(root, PrePatch); r != "" {
		t.Fatalf("safe chain of links refused: %s", r)
	}
	if err := os.Chmod(open, 0o757); err != nil {
		t.Fatal(err)
	}
	if r := CheckPhaseDir(root, PrePatch); !strings.Contains(r, want) {
		t.Fatalf("CheckPhaseDir through a link in an open directory = %q, want %q", r, want)
	}
}

// treeSpec is a generated hooks tree: three outside directories, each with
// a subdirectory, a hooks root, a pre-patch directory that is real or a
// link (possibly through a second link), and one hook that is a file or a
// link to a file in an outside directory.
type treeSpec struct {
	outer, sub   [3]node
	root         node
	phaseKind    int // 0 real dir, 1 link to outer[i]/p, 2 link to outer[i], 3 link via outer[j]/l to outer[i]/p
	phaseI       int
	phaseJ       int
	phase        node // when real
	hookLink     bool
	hookK        int
	hook, target node
}

type node struct {
	mode  fs.FileMode
	owner int // 0 or 65534
}

var dirModes = []fs.FileMode{0o755, 0o775, 0o777, fs.ModeSticky | 0o777, 0o700, 0o757}
var fileModes = []fs.FileMode{0o755, 0o775, 0o757, 0o644, 0o700}

func specFrom(data []byte, root bool) treeSpec {
	i := 0
	next := func(n int) int {
		if len(data) == 0 {
			return 0
		}
		b := data[i%len(data)]
		i++
		return int(b) % n
	}
	owner := func() int {
		if root && next(4) == 0 {
			return 65534
		}
		return os.Geteuid()
	}
	dir := func() node { return node{dirModes[next(len(dirModes))], owner()} }
	file := func() node { return node{fileModes[next(len(fileModes))], owner()} }
	var s treeSpec
	for k := range 3 {
		s.outer[k], s.sub[k] = dir(), dir()
	}
	s.root = dir()
	s.phaseKind, s.phaseI, s.phaseJ = next(4), next(3), next(3)
	s.phase = dir()
	s.hookLink, s.hookK = next(2) == 1, next(3)
	s.hook, s.target = file(), file()
	return s
}

// build makes the tree under base and returns the hooks root.
func (s treeSpec) build(t *testing.T, base string) string {
	t.Helper()
	mk := func(p string, n node) {
		if err := os.Mkdir(p, 0o700); err != nil {
			t.Fatal(err)
		}
		set(t, p, n)
	}
	var outer [3]string
	for k := range 3 {
		outer[k] = filepath.Join(base, fmt.Sprintf("o%d", k))
		mk(outer[k], node{0o755, os.Geteuid()})
		mk(filepath.Join(outer[k], "p"), node{0o755, os.Geteuid()})
		writeHook(t, filepath.Join(outer[k], "p", "f"), okScript, 0o755)
		set(t, filepath.Join(outer[k], "p", "f"), s.target)
	}
	root := filepath.Join(base, "hooks.d")
	mk(root, node{0o755, os.Geteuid()})
	phase := filepath.Join(root, "pre-patch")
	var phaseTarget string
	switch s.phaseKind {
	case 0:
		mk(phase, node{0o755, os.Geteuid()})
		phaseTarget = phase
	case 1:
		phaseTarget = filepath.Join(outer[s.phaseI], "p")
		link(t, phaseTarget, phase)
	case 2:
		phaseTarget = outer[s.phaseI]
		link(t, phaseTarget, phase)
	case 3:
		phaseTarget = filepath.Join(outer[s.phaseI], "p")
		hop := filepath.Join(outer[s.phaseJ], "l")
		link(t, phaseTarget, hop)
		link(t, hop, phase)
	}
	hook := filepath.Join(phaseTarget, "10-hook")
	if s.hookLink {
		link(t, filepath.Join(outer[s.hookK], "p", "f"), hook)
	} else {
		writeHook(t, hook, okScript, 0o755)
		set(t, hook, s.hook)
	}
	// Modes last: a 0700 directory owned by another user must not stop
	// the building of the tree when not root.
	if s.phaseKind == 0 {
		set(t, phase, s.phase)
	}
	for k := range 3 {
		set(t, filepath.Join(outer[k], "p"), s.sub[k])
		set(t, outer[k], s.outer[k])
	}
	set(t, root, s.root)
	return root
}

func set(t *testing.T, p string, n node) {
	t.Helper()
	if err := os.Chmod(p, n.mode); err != nil {
		t.Fatal(err)
	}
	if n.owner != os.Geteuid() {
		if err := os.Chown(p, n.owner, n.owner); err != nil {
			t.Fatal(err)
		}
	}
}

func link(t *testing.T, target, at string) {
	t.Helper()
	if err := os.Symlink(target, at); err != nil {
		t.Fatal(err)
	}
}

// expect is the model's answer, computed from the spec alone: which
// directories a path passes through is known from how the tree was built.
func (s treeSpec) expect() State {
	euid := os.Geteuid()
	safe := func(n node, strict bool) bool {
		ok := n.owner == 0 || n.owner == euid
		ok = ok && n.mode.Perm()&0o022 == 0
		if !ok && !strict && n.mode&fs.ModeSticky != 0 && n.owner == 0 {
			return true
		}
		return ok
	}
	hook := s.hook
	if s.hookLink {
		hook = s.target
	}
	if hook.mode.Perm()&0o111 == 0 {
		return Skipped
	}
	ok := safe(s.root, true)
	switch s.phaseKind {
	case 0:
		ok = ok && safe(s.phase, true)
	case 1:
		ok = ok && safe(s.outer[s.phaseI], false) && safe(s.sub[s.phaseI], true)
	case 2:
		ok = ok && safe(s.outer[s.phaseI], true)
	case 3:
		ok = ok && safe(s.outer[s.phaseJ], false) && safe(s.outer[s.phaseI], false) && safe(s.sub[s.phaseI], true)
	}
	ok = ok && (hook.owner == 0 || hook.owner == euid) && hook.mode.Perm()&0o022 == 0
	if s.hookLink {
		ok = ok && safe(s.outer[s.hookK], false) && safe(s.sub[s.hookK], false)
	}
	if ok {
		return Runnable
	}
	return Refused
}

// FuzzDiscoverRules checks the hook discovery rules against a model over
// generated trees of links, modes and owners. `go test` runs the seeds;
// `go test -fuzz FuzzDiscoverRules ./hooks` explores further.
func FuzzDiscoverRules(f *testing.F) {
	r := rand.New(rand.NewPCG(17, 2))
	for range 300 {
		b := make([]byte, 24)
		for i := range b {
			b[i] = byte(r.IntN(256))
		}
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		s := specFrom(data, os.Geteuid() == 0)
		root := s.build(t, t.TempDir())
		want := s.expect()
		hs, err := Discover(root, PrePatch)
		if err != nil {
			t.Fatalf("Discover: %v (spec %+v)", err, s)
		}
		// The phase directory may be an outside one holding more than the
		// hook; only the hook is judged against the model.
		i := slices.IndexFunc(hs, func(h Hook) bool { return h.Name == "10-hook" })
		if i < 0 {
			t.Fatalf("hook not listed: %+v (spec %+v)", hs, s)
		}
		if h := hs[i]; h.State != want {
			t.Fatalf("hook %s: %s (%s), model says %s\nspec %+v", h.Path, h.State, h.Reason, want, s)
		}
		// Inspect, right before a run, agrees with Discover.
		if h := Inspect(root, PrePatch, "10-hook"); h.State != want {
			t.Fatalf("Inspect: %s (%s), model says %s", h.State, h.Reason, want)
		}
	})
}
