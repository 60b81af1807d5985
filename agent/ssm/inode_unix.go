//go:build unix

package ssm

import (
	"io/fs"
	"syscall"
)

// inode tells a file replaced by rename from one rewritten in place, for
// the rescan's unchanged-file shortcut.
func inode(fi fs.FileInfo) uint64 {
	if st, ok := fi.Sys().(*syscall.Stat_t); ok {
		return uint64(st.Ino)
	}
	return 0
}

// holdOpen: an open descriptor does not stop the agent from deleting or
// renaming the file here.
const holdOpen = true
