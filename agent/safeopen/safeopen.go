// Package safeopen opens the files patchd reads but does not own (its
// configuration, amazon-ssm-agent's state and log files, its own state
// files that an operator may have replaced) so that a wrong kind of file
// cannot hang or exhaust it: only regular files are opened, the open never
// blocks (a FIFO with no writer would block open(2) for good), and whole-file
// reads stop at a limit far above anything real, with an error naming it.
package safeopen

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
)

// ErrNotRegular is wrapped by the error for a path that is a directory,
// FIFO, socket or device.
var ErrNotRegular = errors.New("not a regular file")

// ErrTooLarge is wrapped by the error for content past the read limit.
var ErrTooLarge = errors.New("larger than the limit")

// Open opens path for reading if it is (or links to) a regular file. It
// checks before opening, so a device is never opened, and again on the
// open descriptor, so a file swapped in between is refused too. A missing
// file gives an error satisfying errors.Is(err, fs.ErrNotExist).
func Open(path string) (*os.File, error) {
	fi, err := os.Stat(path)
	if err != nil {
		return nil, err
	}
	if !fi.Mode().IsRegular() {
		return nil, notRegular(path, fi.Mode())
	}
	f, err := os.OpenFile(path, os.O_RDONLY|openFlags, 0)
	if err != nil {
		return nil, err
	}
	fi, err = f.Stat()
	if err != nil {
		f.Close()
		return nil, err
	}
	if !fi.Mode().IsRegular() {
		f.Close()
		return nil, notRegular(path, fi.Mode())
	}
	return f, nil
}

// ReadFile reads the regular file at path whole, refusing one larger than
// limit bytes.
func ReadFile(path string, limit int64) ([]byte, error) {
	f, err := Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	if fi, err := f.Stat(); err == nil && fi.Size() > limit {
		return nil, tooLarge(path, limit)
	}
	return ReadAll(f, limit, path)
}

// ReadAll reads r to its end, refusing more than limit bytes; name says
// what r is in the error. It is for files that grow while read and for
// answers from the network.
func ReadAll(r io.Reader, limit int64, name string) ([]byte, error) {
	data, err := io.ReadAll(io.LimitReader(r, limit+1))
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", name, err)
	}
	if int64(len(data)) > limit {
		return nil, tooLarge(name, limit)
	}
	return data, nil
}

// LimitReader returns a reader of r that fails with an ErrTooLarge error
// once more than limit bytes were read, rather than stopping silently as
// io.LimitReader does: a decoder reading it must not take a cut-off
// document for a whole one.
func LimitReader(r io.Reader, limit int64, name string) io.Reader {
	return &limited{r: r, left: limit, limit: limit, name: name}
}

type limited struct {
	r     io.Reader
	left  int64
	limit int64
	name  string
}

func (l *limited) Read(p []byte) (int, error) {
	if l.left < 0 {
		return 0, tooLarge(l.name, l.limit)
	}
	// Read one byte past the limit to tell "exactly limit" from "more".
	if int64(len(p)) > l.left+1 {
		p = p[:l.left+1]
	}
	n, err := l.r.Read(p)
	l.left -= int64(n)
	if l.left < 0 {
		return n - int(-l.left), tooLarge(l.name, l.limit)
	}
	return n, err
}

func notRegular(path string, m fs.FileMode) error {
	return fmt.Errorf("%s is a %s, not a regular file; patchd reads only regular files (replace it with one): %w",
		path, Kind(m), ErrNotRegular)
}

func tooLarge(name string, limit int64) error {
	return fmt.Errorf("%s is larger than %s, far more than such a file ever holds; it is not read (check what wrote it): %w",
		name, Size(limit), ErrTooLarge)
}

// Kind names the type of a file for an error message.
func Kind(m fs.FileMode) string {
	switch {
	case m.IsDir():
		return "directory"
	case m.IsRegular():
		return "regular file"
	case m&fs.ModeSymlink != 0:
		return "symbolic link"
	case m&fs.ModeNamedPipe != 0:
		return "named pipe (FIFO)"
	case m&fs.ModeSocket != 0:
		return "socket"
	case m&fs.ModeCharDevice != 0:
		return "character device"
	case m&fs.ModeDevice != 0:
		return "block device"
	default:
		return "special file"
	}
}

// Size formats a byte count for messages: "16 MiB".
func Size(n int64) string {
	switch {
	case n >= 1<<30 && n%(1<<30) == 0:
		return fmt.Sprintf("%d GiB", n>>30)
	case n >= 1<<20 && n%(1<<20) == 0:
		return fmt.Sprintf("%d MiB", n>>20)
	case n >= 1<<10 && n%(1<<10) == 0:
		return fmt.Sprintf("%d KiB", n>>10)
	default:
		return fmt.Sprintf("%d bytes", n)
	}
}
