//go:build !unix

package ssm

import "io/fs"

// inode is unknown here; size and mtime alone decide the rescan shortcut.
func inode(fs.FileInfo) uint64 { return 0 }
