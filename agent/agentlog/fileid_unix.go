//go:build unix

package agentlog

import (
	"os"
	"syscall"
)

// fileID returns the device and inode of fi: what tells a re-created or
// renamed file from the one being read.
func fileID(fi os.FileInfo) (dev, ino uint64) {
	if st, ok := fi.Sys().(*syscall.Stat_t); ok {
		return uint64(st.Dev), uint64(st.Ino)
	}
	return 0, 0
}
