package atomicfile

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
)

func TestWriteFileReplacesAndLeavesNoTemp(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "state.json")
	if err := WriteFile(p, []byte("one"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := WriteJSON(p, map[string]int{"a": 1}, 0o600); err != nil {
		t.Fatal(err)
	}
	got, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	if string(got) != "{\n  \"a\": 1\n}\n" {
		t.Fatalf("content = %q", got)
	}
	fi, _ := os.Stat(p)
	if fi.Mode().Perm() != 0o600 {
		t.Fatalf("mode = %v, want 0600", fi.Mode().Perm())
	}
	entries, _ := os.ReadDir(dir)
	if len(entries) != 1 {
		t.Fatalf("directory holds %d entries, want only the target", len(entries))
	}
}

func TestWriteFileMissingDirNamesPath(t *testing.T) {
	p := filepath.Join(t.TempDir(), "nope", "x")
	err := WriteFile(p, nil, 0o600)
	if err == nil || !strings.Contains(err.Error(), p) {
		t.Fatalf("err = %v, want it to name %s", err, p)
	}
}

func TestReadRegularRefusesFIFOWithoutBlocking(t *testing.T) {
	dir := t.TempDir()
	fifo := filepath.Join(dir, "state.json")
	if err := syscall.Mkfifo(fifo, 0o600); err != nil {
		t.Skipf("mkfifo: %v", err)
	}
	// A blocking open of a FIFO without a writer never returns: the test
	// would hang, and the go test timeout names it.
	_, err := ReadRegular(fifo, 1<<20)
	var nr *NotRegularError
	if !errors.As(err, &nr) || !strings.Contains(err.Error(), fifo) || !strings.Contains(err.Error(), "FIFO") {
		t.Fatalf("ReadRegular(FIFO) = %v, want a NotRegularError naming the path", err)
	}
	if _, err := ReadRegular(dir, 1<<20); !errors.As(err, &nr) {
		t.Errorf("ReadRegular(dir) = %v, want NotRegularError", err)
	}
}

func TestReadRegularCapsTheSize(t *testing.T) {
	path := filepath.Join(t.TempDir(), "big")
	if err := os.WriteFile(path, make([]byte, 101), 0o600); err != nil {
		t.Fatal(err)
	}
	var tl *TooLargeError
	if _, err := ReadRegular(path, 100); !errors.As(err, &tl) {
		t.Fatalf("ReadRegular over the limit = %v, want TooLargeError", err)
	}
	if data, err := ReadRegular(path, 101); err != nil || len(data) != 101 {
		t.Fatalf("ReadRegular at the limit = %d bytes, %v", len(data), err)
	}
	if _, err := ReadRegular(filepath.Join(t.TempDir(), "none"), 1); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("missing file: %v, want ErrNotExist", err)
	}
}
