package hooks

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
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
	if symlink {
		target, err := filepath.EvalSymlinks(path)
		if err != nil {
			return refuse(fmt.Sprintf("symlink cannot be resolved: %v; point it at an existing file or remove it", err))
		}
		if fi, err = os.Stat(target); err != nil {
			return refuse(fmt.Sprintf("symlink target %s: %v", target, err))
		}
		h.Target = target
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
	if symlink {
		if r := checkTargetDirs(root, filepath.Dir(h.Target)); r != "" {
			return refuse("symlink target " + r)
		}
	}
	h.State = Runnable
	return h
}

// checkDirChain checks the hooks root and the phase directory. It returns
// "" when both are safe or absent.
func checkDirChain(root string, phase Phase) string {
	for _, d := range []string{root, filepath.Join(root, string(phase))} {
		fi, err := os.Stat(d)
		if err != nil {
			if errors.Is(err, fs.ErrNotExist) {
				continue
			}
			return fmt.Sprintf("directory %s: %v", d, err)
		}
		if r := checkOwnerMode(d, fi, "directory"); r != "" {
			return r
		}
	}
	return ""
}

// checkTargetDirs checks every directory from a symlink target's directory
// up to the hooks root when the target lies inside it, or up to / when it
// does not: whoever can write any of them can replace the target. A
// root-owned sticky directory (/tmp) lets nobody replace another user's
// entry, so it passes.
func checkTargetDirs(root, dir string) string {
	stop := "/"
	if r, err := filepath.EvalSymlinks(root); err == nil {
		if rel, err := filepath.Rel(r, dir); err == nil && rel != ".." && !strings.HasPrefix(rel, "../") {
			stop = r
		}
	}
	for {
		fi, err := os.Stat(dir)
		if err != nil {
			return fmt.Sprintf("directory %s: %v", dir, err)
		}
		sticky := fi.Mode()&fs.ModeSticky != 0 && ownerUID(fi) == 0
		if r := checkOwnerMode(dir, fi, "directory"); r != "" && !sticky {
			return r
		}
		if dir == stop || dir == "/" {
			return ""
		}
		dir = filepath.Dir(dir)
	}
}

// checkOwnerMode applies the refusal rules to one file or directory: owned
// by root or by patchd's own user (so an unprivileged test or demo works),
// and writable by nobody else.
func checkOwnerMode(path string, fi fs.FileInfo, what string) string {
	if uid := ownerUID(fi); uid != 0 && uid != os.Geteuid() {
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
