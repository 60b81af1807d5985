//go:build !unix

package ssm

import "io/fs"

// inode is unknown here; size and mtime alone decide the rescan shortcut.
func inode(fs.FileInfo) uint64 { return 0 }

// holdOpen is off: on Windows an open file can block the agent's delete.
const holdOpen = false
