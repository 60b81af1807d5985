package agentlog

import (
	"errors"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"time"
)

// restore opens the files where the last run stopped. Without an offsets
// file (first start) or with a corrupt one, reading starts at the end of the
// current files: replaying a 30 MB log as fresh events would make the keeper
// and the cycle act on history.
func (t *Tailer) restore() {
	data, err := os.ReadFile(t.o.StatePath)
	var st offsetsState
	fresh := false
	switch {
	case errors.Is(err, fs.ErrNotExist):
		fresh = true
	case err != nil:
		t.log.Error("cannot read agent log offsets; starting at the end of the current files", "path", t.o.StatePath, "err", err)
		fresh = true
	default:
		st, err = parseState(data)
		if err != nil {
			t.log.Error("agent log offsets file is corrupt; starting at the end of the current files (it is rewritten shortly)",
				"path", t.o.StatePath, "err", err)
			fresh = true
		}
	}
	now := t.clk.Now()
	for _, fl := range t.follow {
		t.restoreOne(fl, st, fresh, now)
	}
	t.dirty = true
}

func (t *Tailer) restoreOne(fl *follower, st offsetsState, fresh bool, now time.Time) {
	path := filepath.Join(t.o.Dir, fl.name)
	var saved []fileState
	for _, f := range st.Files {
		if f.Name == fl.name {
			saved = append(saved, f)
		}
	}
	if fresh || len(saved) == 0 {
		// A name not in the state is newly configured: like a first start.
		if fi, err := os.Stat(path); err == nil && fi.Mode().IsRegular() {
			t.openCur(fl, path, fi.Size())
		}
		return
	}
	for _, f := range saved {
		if f.Inode == 0 {
			// The file did not exist at the last persist: whatever is
			// there now was written since, so all of it is new.
			if fi, err := os.Stat(path); err == nil && fi.Mode().IsRegular() {
				t.openCur(fl, path, 0)
			}
			continue
		}
		fi, err := os.Stat(path)
		if !f.Rotated && err == nil {
			if dev, ino := fileID(fi); dev == f.Dev && ino == f.Inode {
				off := f.Offset
				if fi.Size() < off || !matchesFingerprint(path, f) {
					t.log.Info("agent log file was truncated or replaced while patchd was down; reading it from the start", "path", path)
					off = 0
				}
				t.openCur(fl, path, off)
				continue
			}
		}
		// The file was renamed (or deleted) since: find it by identity
		// and drain it from where we stopped.
		if old := t.findByID(f.Dev, f.Inode); old != "" && matchesFingerprint(old, f) {
			if fi, err := os.Stat(old); err == nil && fi.Size() >= f.Offset {
				if s, err := t.open(fl.name, old, f.Offset); err == nil {
					s.until = now.Add(t.o.RotationGrace)
					fl.old = append(fl.old, s)
					t.log.Info("draining agent log file rotated while patchd was down", "file", fl.name, "path", old, "offset", f.Offset)
				}
			}
		} else {
			t.log.Warn("agent log file rotated away while patchd was down and is gone; its unread lines are lost", "file", fl.name)
		}
		if !f.Rotated && fl.cur == nil {
			// Its successor at the name was created after the rotation.
			if fi, err := os.Stat(path); err == nil && fi.Mode().IsRegular() {
				t.openCur(fl, path, 0)
			}
		}
	}
}

func (t *Tailer) openCur(fl *follower, path string, off int64) {
	if fl.cur != nil {
		return
	}
	s, err := t.open(fl.name, path, off)
	if err != nil {
		t.log.Warn("cannot open agent log file; will retry", "path", path, "err", err)
		return
	}
	fl.cur = s
}

// findByID returns the path in Dir of the regular file with this device and
// inode, or "".
func (t *Tailer) findByID(dev, ino uint64) string {
	ents, err := os.ReadDir(t.o.Dir)
	if err != nil {
		return ""
	}
	for _, e := range ents {
		if !e.Type().IsRegular() {
			continue
		}
		p := filepath.Join(t.o.Dir, e.Name())
		fi, err := os.Stat(p)
		if err != nil {
			continue
		}
		if d, i := fileID(fi); d == dev && i == ino {
			return p
		}
	}
	return ""
}

// matchesFingerprint reports whether path begins with the bytes the state
// recorded (inode numbers are reused right after a delete).
func matchesFingerprint(path string, f fileState) bool {
	if f.FingerprintLen == 0 {
		return true
	}
	fh, err := os.Open(path)
	if err != nil {
		return false
	}
	defer fh.Close()
	b := make([]byte, f.FingerprintLen)
	if _, err := io.ReadFull(fh, b); err != nil {
		return false
	}
	return fingerprint(b) == f.Fingerprint
}
