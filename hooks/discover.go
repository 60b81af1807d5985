package hooks

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
)

// skipSuffixes are left behind by editors and package managers; they are
// never hooks, whatever their mode (run-parts and cron ignore them too).
var skipSuffixes = []string{
	"~", ".bak", ".swp", ".dpkg-old", ".dpkg-new", ".dpkg-dist",
	".rpmnew", ".rpmsave", ".disabled",
}

// ValidPhase reports whether p names one of the three phases.
func ValidPhase(p Phase) bool {
	for _, q := range Phases {
		if p == q {
			return true
		}
	}
	return false
}

// Discover lists the files of root/<phase>/ in lexical (byte) order, each
// marked Runnable, Skipped or Refused with its reason. A missing root or
// phase directory is no error: it has no hooks. An error means the
// directory exists but cannot be read, which must not pass for "no hooks".
func Discover(root string, phase Phase) ([]Hook, error) {
	if !ValidPhase(phase) {
		return nil, fmt.Errorf("unknown hook phase %q: use pre-patch, pre-reboot or post-patch", phase)
	}
	root = absPath(root)
	dir := filepath.Join(root, string(phase))
	entries, err := os.ReadDir(dir) // sorted by file name
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return nil, nil
		}
		return nil, fmt.Errorf("hooks directory %s: %w (it must be a directory readable by patchd)", dir, err)
	}
	// The directories are checked once per scan; a hook is only as safe as
	// every directory between it and the hooks root.
	dirReason := checkDirChain(root, phase)
	hooks := make([]Hook, 0, len(entries))
	for _, e := range entries {
		hooks = append(hooks, inspect(root, phase, e.Name(), dirReason))
	}
	return hooks, nil
}

// Inspect decides about one file again, right before it runs: the list a
// caller holds may be minutes old, and the file may have changed since.
func Inspect(root string, phase Phase, name string) Hook {
	root = absPath(root)
	return inspect(root, phase, name, checkDirChain(root, phase))
}

func inspect(root string, phase Phase, name, dirReason string) Hook {
	path := filepath.Join(root, string(phase), name)
	h := Hook{Phase: phase, Name: name, Path: path, Target: path}
	skip := func(reason string) Hook {
		h.State, h.Reason = Skipped, reason
		return h
	}
	refuse := func(reason string) Hook {
		h.State, h.Reason = Refused, reason
		return h
	}
	if strings.HasPrefix(name, ".") {
		return skip("hidden file (name starts with .)")
	}
	for _, s := range skipSuffixes {
		if strings.HasSuffix(name, s) {
			return skip("backup or package-manager file (name ends in " + s + ")")
		}
	}
	fi, err := os.Lstat(path)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return skip("no longer exists")
		}
		return refuse(fmt.Sprintf("cannot stat: %v", err))
	}
	symlink := fi.Mode()&fs.ModeSymlink != 0
	targetReason := ""
	if symlink {
		// Every directory the link leads through must be as safe as the
		// hooks tree: whoever can write one can swap the target.
		target, reason, err := walk(path, false)
		if err != nil {
			return refuse(fmt.Sprintf("symlink cannot be resolved: %v; point it at an existing file or remove it", err))
		}
		if fi, err = os.Stat(target); err != nil {
			return refuse(fmt.Sprintf("symlink target %s: %v", target, err))
		}
		h.Target, targetReason = target, reason
	}
	switch {
	case fi.IsDir():
		return skip("directory")
	case !fi.Mode().IsRegular():
		return skip("not a regular file")
	case fi.Mode().Perm()&0o111 == 0:
		return skip("not executable (chmod +x " + path + " to enable it)")
	}
	if dirReason != "" {
		return refuse(dirReason)
	}
	if r := checkOwnerMode(h.Target, fi, "file"); r != "" {
		if symlink {
			r = "symlink target " + r
		}
		return refuse(r)
	}
	if targetReason != "" {
		return refuse("symlink target " + targetReason)
	}
	h.State = Runnable
	return h
}

// checkDirChain checks every directory from / to the hooks root and on to
// the phase directory, links resolved. It returns "" when all are safe or
// the chain ends in a missing directory (no hooks). The root's chain is
// walked once and the phase directory entered from where it led: the
// check runs again before every hook, so it costs a stat per directory,
// not two.
func checkDirChain(root string, phase Phase) string {
	resolved, reason, err := walk(root, true)
	if err == nil && reason == "" {
		dir := filepath.Join(root, string(phase))
		if _, reason, err = walkFrom(resolved, []string{string(phase)}, true, dir); err != nil {
			root = dir
		}
	}
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return ""
		}
		return fmt.Sprintf("directory %s: %v", root, err)
	}
	return reason
}

// CheckPhaseDir says why the directories leading to a phase's hooks are
// unsafe, or "" when they are safe (or absent). `patchd check` reports it
// even for a phase without hooks: an unsafe phase directory lets someone
// else decide what runs next.
func CheckPhaseDir(root string, phase Phase) string {
	return checkDirChain(absPath(root), phase)
}

// maxLinks is the kernel's limit of symbolic links followed in one path.
const maxLinks = 40

// walk resolves the absolute path one component at a time, as the kernel
// does, and applies the directory rules to every directory it passes
// through, the ones holding symbolic links and the ones inside link
// targets included: whoever can write any of them can make the path lead
// elsewhere. A root-owned sticky directory (/tmp) lets nobody replace
// another user's entry, so it passes, except as the last directory when
// strictLast is set (the hooks root and the phase directories, where
// anyone could add files). It returns the resolved path and the first
// reason the path is unsafe ("" when safe); err is a failure to resolve
// it (a missing component satisfies errors.Is(err, fs.ErrNotExist)).
func walk(path string, strictLast bool) (resolved, reason string, err error) {
	fi, err := os.Stat("/")
	if err != nil {
		return "", "", err
	}
	rest := splitPath(path)
	reason = dirRule("/", fi, strictLast && !hasComponents(rest))
	resolved, r, err := walkFrom("/", rest, strictLast, path)
	if reason == "" {
		reason = r
	}
	return resolved, reason, err
}

// walkFrom goes on with walk from cur, a resolved directory already
// checked, through the components rest; path names the whole for errors.
func walkFrom(cur string, rest []string, strictLast bool, path string) (resolved, reason string, err error) {
	links := 0
	for len(rest) > 0 {
		c := rest[0]
		rest = rest[1:]
		switch c {
		case "", ".":
			continue
		case "..":
			cur = filepath.Dir(cur) // cur is resolved: ".." is lexical here
			continue
		}
		next := filepath.Join(cur, c)
		fi, err := os.Lstat(next)
		if err != nil {
			return "", "", err
		}
		if fi.Mode()&fs.ModeSymlink != 0 {
			if links++; links > maxLinks {
				return "", "", fmt.Errorf("%s: more than %d symbolic links", path, maxLinks)
			}
			target, err := os.Readlink(next)
			if err != nil {
				return "", "", err
			}
			if filepath.IsAbs(target) {
				cur = "/"
			}
			rest = append(splitPath(target), rest...)
			continue
		}
		cur = next
		if !fi.IsDir() {
			if hasComponents(rest) {
				return "", "", fmt.Errorf("%s: %s is not a directory", path, cur)
			}
			break
		}
		if r := dirRule(cur, fi, strictLast && !hasComponents(rest)); r != "" && reason == "" {
			reason = r
		}
	}
	return cur, reason, nil
}

// dirRule applies checkOwnerMode to a directory, letting a root-owned
// sticky one pass unless strict.
func dirRule(path string, fi fs.FileInfo, strict bool) string {
	r := checkOwnerMode(path, fi, "directory")
	if r != "" && !strict && fi.Mode()&fs.ModeSticky != 0 && ownerUID(fi) == 0 {
		return ""
	}
	return r
}

func splitPath(p string) []string { return strings.Split(p, "/") }

// hasComponents reports whether rest still names something to enter.
func hasComponents(rest []string) bool {
	for _, c := range rest {
		if c != "" && c != "." {
			return true
		}
	}
	return false
}

// checkOwnerMode applies the refusal rules to one file or directory: owned
// by root or by patchd's own user (so an unprivileged test or demo works),
// and writable by nobody else.
func checkOwnerMode(path string, fi fs.FileInfo, what string) string {
	if uid := ownerUID(fi); uid != 0 && uid != euid() {
		return fmt.Sprintf("%s %s is owned by uid %d, not root or patchd's user: chown root %s", what, path, uid, path)
	}
	perm := fi.Mode().Perm()
	if perm&0o002 != 0 {
		return fmt.Sprintf("%s %s is world-writable: chmod o-w %s", what, path, path)
	}
	if perm&0o020 != 0 {
		return fmt.Sprintf("%s %s is group-writable: chmod g-w %s", what, path, path)
	}
	return ""
}

// euid is patchd's effective uid, asked once: it does not change, and the
// rules run for every directory before every hook.
var euid = sync.OnceValue(os.Geteuid)

func ownerUID(fi fs.FileInfo) int {
	if st, ok := fi.Sys().(*syscall.Stat_t); ok {
		return int(st.Uid)
	}
	// Without an owner to check, refuse rather than trust.
	return -1
}

// absPath makes a relative --path.hooks absolute: hooks run in /, and the
// path executed must not depend on patchd's working directory.
func absPath(p string) string {
	if a, err := filepath.Abs(p); err == nil {
		return a
	}
	return p
}
