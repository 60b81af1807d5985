package config

import (
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// A configuration that is a FIFO, a link to an endless device, or absurdly
// large is refused promptly with an error naming the file, never read
// until patchd hangs or is killed.
func TestLoadRefusesHostileFiles(t *testing.T) {
	dir := t.TempDir()
	fifo := filepath.Join(dir, "fifo.yaml")
	if err := syscall.Mkfifo(fifo, 0o644); err != nil {
		t.Fatal(err)
	}
	zero := filepath.Join(dir, "zero.yaml")
	if err := os.Symlink("/dev/zero", zero); err != nil {
		t.Fatal(err)
	}
	big := filepath.Join(dir, "big.yaml")
	if err := os.WriteFile(big, []byte("# "+strings.Repeat("x", MaxFileSize)+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	for path, want := range map[string]string{fifo: "named pipe", zero: "character device", big: "larger than 1 MiB"} {
		done := make(chan error, 1)
		go func() {
			_, err := Load(path, false)
			done <- err
		}()
		select {
		case err := <-done:
			if err == nil || !strings.Contains(err.Error(), path) || !strings.Contains(err.Error(), want) {
				t.Errorf("Load(%s) = %v, want an error naming the file and %q", path, err, want)
			}
		case <-time.After(20 * time.Second):
			t.Fatalf("Load(%s) did not return", path)
		}
	}
}
