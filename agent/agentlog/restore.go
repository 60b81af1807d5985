package agentlog

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"time"

	"github.com/patchd/patchd/agent/safeopen"
)

// maxStateFileSize bounds the offsets file: it holds a few lines per
// followed file.
const maxStateFileSize = 1 << 20

// restore opens the files where the last run stopped. Without an offsets
// file (first start) or with a corrupt one, reading starts at the end of the
// current files: replaying a 30 MB log as fresh events would make the keeper
// and the cycle act on history. With a Journal, the offsets first move over
// what the journal recorded after the offsets were written; an error then
// is the journal's, and stops the Tailer.
func (t *Tailer) restore() error {
	data, err := safeopen.ReadFile(t.o.StatePath, maxStateFileSize)
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
	if t.o.Journal != nil {
		if fresh || st.Mark == nil {
			t.log.Info("agent log offsets carry no journal mark (first start, or a corrupt offsets file); the journal is kept as it is", "path", t.o.StatePath)
		} else if err := t.recover(&st); err != nil {
			return err
		}
	}
	now := t.clk.Now()
	for _, fl := range t.follow {
		t.restoreOne(fl, st, fresh, now)
	}
	t.dirty = true
	return nil
}

// recover moves each file's offset to the end of the last entry the journal
// recorded from it after the offsets were written. Every such entry is of a
// file the offsets name: a file is written into them before its first line
// is handed out, and again when it is truncated.
func (t *Tailer) recover(st *offsetsState) error {
	pos, err := t.o.Journal.Recover(*st.Mark)
	if err != nil {
		return fmt.Errorf("agent log: recovering the consumer's journal past mark %d (from %s): %w", *st.Mark, t.o.StatePath, err)
	}
	moved := 0
	for _, p := range pos {
		i := slices.IndexFunc(st.Files, func(f fileState) bool { return f.Inode != 0 && f.Dev == p.Dev && f.Inode == p.Inode })
		switch {
		case i < 0:
			t.log.Warn("the journal holds an entry of a file the agent log offsets do not name; lines after it may be handed out again",
				"dev", p.Dev, "inode", p.Inode, "offset", p.Offset)
		case p.Offset < st.Files[i].Offset:
			t.log.Warn("the journal holds an entry before the agent log offsets; ignored", "inode", p.Inode, "offset", p.Offset, "saved", st.Files[i].Offset)
		default:
			st.Files[i].Offset = p.Offset
			moved++
		}
	}
	if moved > 0 {
		t.log.Info("agent log offsets moved over the entries the journal recorded after they were written", "entries", moved)
	}
	return nil
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
		// A rotated file is never the one at the name (that inode is a
		// reused one), and no file is read twice.
		if old := t.findByID(f.Dev, f.Inode); old != "" && old != path && !t.isOpen(f.Dev, f.Inode) && matchesFingerprint(old, f) {
			if fi, err := os.Stat(old); err == nil && fi.Size() >= f.Offset {
				if s, err := t.open(fl.name, old, f.Offset); err == nil {
					s.until = now.Add(t.o.RotationGrace)
					fl.old = append(fl.old, s)
					t.log.Info("draining agent log file rotated while patchd was down", "file", fl.name, "path", old, "offset", f.Offset)
				}
			}
		} else {
			// Whether it had unread lines is not known: a writer may
			// have added some after the last write of the offsets.
			t.log.Warn("agent log file rotated away while patchd was down and is gone; lines written to it after patchd's last look at it are lost",
				"file", fl.name, "inode", f.Inode, "offset", f.Offset)
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

// isOpen reports whether a file with this device and inode is being read.
func (t *Tailer) isOpen(dev, ino uint64) bool {
	for _, fl := range t.follow {
		if fl.cur != nil && fl.cur.dev == dev && fl.cur.ino == ino {
			return true
		}
		for _, s := range fl.old {
			if s.dev == dev && s.ino == ino {
				return true
			}
		}
	}
	return false
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
	// A FIFO at the name (its inode may be the old file's, reused) must
	// not block the restore.
	fh, err := safeopen.Open(path)
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
