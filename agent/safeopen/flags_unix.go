//go:build unix

package safeopen

import "syscall"

// O_NONBLOCK: if a FIFO is swapped in between the check and the open, the
// open returns at once instead of waiting for a writer. It has no effect on
// regular files.
const openFlags = syscall.O_NONBLOCK
