package atomicfile

import (
	"fmt"
	"io"
	"os"
	"syscall"
)

// OpenRegular opens path for reading without ever blocking on it: a FIFO
// opened for reading waits for a writer, so the open uses O_NONBLOCK and
// the file is refused unless fstat says it is a regular file. The error
// names the path and what to do. The descriptor is returned to blocking
// mode, which a regular file ignores anyway.
func OpenRegular(path string) (*os.File, error) {
	f, err := os.OpenFile(path, os.O_RDONLY|syscall.O_NONBLOCK|syscall.O_NOCTTY, 0)
	if err != nil {
		return nil, err
	}
	fi, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	if !fi.Mode().IsRegular() {
		f.Close()
		return nil, &NotRegularError{Path: path, Mode: fi.Mode()}
	}
	return f, nil
}

// NotRegularError says that a state file is something else than a regular
// file (a FIFO, a device, a directory), which patchd never reads.
type NotRegularError struct {
	Path string
	Mode os.FileMode
}

func (e *NotRegularError) Error() string {
	return fmt.Sprintf("%s is not a regular file (%s); patchd reads only regular files there: remove it (patchd recreates it)",
		e.Path, kind(e.Mode))
}

func kind(m os.FileMode) string {
	switch {
	case m&os.ModeNamedPipe != 0:
		return "a FIFO"
	case m&os.ModeSocket != 0:
		return "a socket"
	case m&os.ModeDevice != 0:
		return "a device"
	case m.IsDir():
		return "a directory"
	}
	return "mode " + m.String()
}

// TooLargeError says that a file is larger than patchd ever writes there.
type TooLargeError struct {
	Path  string
	Limit int64
}

func (e *TooLargeError) Error() string {
	return fmt.Sprintf("%s is larger than %d bytes, far more than patchd writes there; move it away to inspect it", e.Path, e.Limit)
}

// ReadRegular reads a whole regular file of at most limit bytes, opened
// with OpenRegular. A missing file is the os error (fs.ErrNotExist).
func ReadRegular(path string, limit int64) ([]byte, error) {
	f, err := OpenRegular(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, limit+1))
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	if int64(len(data)) > limit {
		return nil, &TooLargeError{Path: path, Limit: limit}
	}
	return data, nil
}
