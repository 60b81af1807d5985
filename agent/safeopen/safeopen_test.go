package safeopen

import (
	"bytes"
	"errors"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// readBounded runs ReadFile and fails the test if it does not return: a
// blocking open is the bug this package exists for.
func readBounded(t *testing.T, path string, limit int64) ([]byte, error) {
	t.Helper()
	type result struct {
		data []byte
		err  error
	}
	done := make(chan result, 1)
	go func() {
		d, err := ReadFile(path, limit)
		done <- result{d, err}
	}()
	select {
	case r := <-done:
		return r.data, r.err
	case <-time.After(10 * time.Second):
		t.Fatalf("ReadFile(%s) blocked", path)
		return nil, nil
	}
}

func TestReadFileRefusesWhatIsNotARegularFile(t *testing.T) {
	dir := t.TempDir()
	fifo := filepath.Join(dir, "fifo")
	if err := syscall.Mkfifo(fifo, 0o600); err != nil {
		t.Fatal(err)
	}
	zero := filepath.Join(dir, "zero")
	if err := os.Symlink("/dev/zero", zero); err != nil {
		t.Fatal(err)
	}
	sub := filepath.Join(dir, "sub")
	if err := os.Mkdir(sub, 0o755); err != nil {
		t.Fatal(err)
	}
	for path, kind := range map[string]string{fifo: "named pipe", zero: "character device", sub: "directory"} {
		_, err := readBounded(t, path, 1<<20)
		if !errors.Is(err, ErrNotRegular) || !strings.Contains(err.Error(), kind) || !strings.Contains(err.Error(), path) {
			t.Errorf("ReadFile(%s) = %v, want a not-regular error naming the path and %q", path, err, kind)
		}
	}
}

func TestReadFileLimit(t *testing.T) {
	path := filepath.Join(t.TempDir(), "f")
	if err := os.WriteFile(path, bytes.Repeat([]byte("x"), 100), 0o644); err != nil {
		t.Fatal(err)
	}
	if d, err := readBounded(t, path, 100); err != nil || len(d) != 100 {
		t.Fatalf("ReadFile at the limit = %d bytes, %v", len(d), err)
	}
	_, err := readBounded(t, path, 99)
	if !errors.Is(err, ErrTooLarge) || !strings.Contains(err.Error(), "99 bytes") {
		t.Fatalf("ReadFile past the limit = %v, want ErrTooLarge naming the limit", err)
	}
	link := filepath.Join(t.TempDir(), "link")
	if err := os.Symlink(path, link); err != nil {
		t.Fatal(err)
	}
	if d, err := readBounded(t, link, 100); err != nil || len(d) != 100 {
		t.Fatalf("ReadFile through a symlink = %d bytes, %v", len(d), err)
	}
	if _, err := readBounded(t, filepath.Join(t.TempDir(), "missing"), 1); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("ReadFile(missing) = %v, want ErrNotExist", err)
	}
}

// /dev/zero never ends: the limit must stop the read, with an error.
func TestReadAllEndlessSource(t *testing.T) {
	f, err := os.Open("/dev/zero")
	if err != nil {
		t.Skip(err)
	}
	defer f.Close()
	if _, err := ReadAll(f, 1<<20, "endless"); !errors.Is(err, ErrTooLarge) || !strings.Contains(err.Error(), "1 MiB") {
		t.Fatalf("ReadAll(/dev/zero) = %v, want ErrTooLarge naming 1 MiB", err)
	}
}

func TestLimitReader(t *testing.T) {
	for _, tc := range []struct {
		n, limit int
		tooLarge bool
	}{{0, 0, false}, {10, 10, false}, {11, 10, true}, {5000, 10, true}, {9, 10, false}} {
		r := LimitReader(iotest(tc.n), int64(tc.limit), "answer")
		data, err := io.ReadAll(r)
		if tc.tooLarge {
			if !errors.Is(err, ErrTooLarge) || len(data) > tc.limit {
				t.Errorf("n=%d limit=%d: %d bytes, %v; want ErrTooLarge and at most the limit", tc.n, tc.limit, len(data), err)
			}
			continue
		}
		if err != nil || len(data) != tc.n {
			t.Errorf("n=%d limit=%d: %d bytes, %v", tc.n, tc.limit, len(data), err)
		}
	}
}

// iotest returns a reader of n bytes delivered in small pieces.
func iotest(n int) io.Reader {
	return io.MultiReader(bytes.NewReader(bytes.Repeat([]byte("a"), n/2)), bytes.NewReader(bytes.Repeat([]byte("b"), n-n/2)))
}
