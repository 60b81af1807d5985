package ssm

import (
	"errors"
	"os"
	"path/filepath"
	"runtime"
	"syscall"
	"testing"
	"time"

	"github.com/patchd/patchd/agent/safeopen"
)

// A state file replaced by a FIFO must not block the watcher.
func TestStateFileFIFOIsRefused(t *testing.T) {
	path := filepath.Join(t.TempDir(), "document-id")
	if err := syscall.Mkfifo(path, 0o600); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 2)
	go func() {
		_, f, _, err := openState(path)
		if f != nil {
			f.Close()
		}
		done <- err
	}()
	go func() {
		_, err := ReadState(path)
		done <- err
	}()
	for range 2 {
		select {
		case err := <-done:
			if !errors.Is(err, safeopen.ErrNotRegular) {
				t.Errorf("reading a FIFO state file = %v, want ErrNotRegular", err)
			}
		case <-time.After(20 * time.Second):
			t.Fatal("reading a FIFO state file blocked")
		}
	}
}

// A 50 MB state file is refused before it is read: it used to cost five
// times its size in memory.
func TestHugeStateFileIsRefusedWithoutReadingIt(t *testing.T) {
	path := filepath.Join(t.TempDir(), "document-id")
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := f.Truncate(50 << 20); err != nil {
		t.Fatal(err)
	}
	f.Close()
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	_, held, _, err := openState(path)
	if held != nil {
		held.Close()
	}
	_, err2 := ReadState(path)
	runtime.ReadMemStats(&after)
	for _, e := range []error{err, err2} {
		if !errors.Is(e, safeopen.ErrTooLarge) {
			t.Errorf("reading a 50 MB state file = %v, want ErrTooLarge", e)
		}
	}
	if alloc := after.TotalAlloc - before.TotalAlloc; alloc > 4<<20 {
		t.Errorf("refusing a 50 MB state file allocated %d MiB", alloc>>20)
	}
	// A held file that grew past the limit is refused the same way.
	small := filepath.Join(t.TempDir(), "small")
	if err := os.WriteFile(small, []byte("{}"), 0o600); err != nil {
		t.Fatal(err)
	}
	h, err := os.Open(small)
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	if err := os.Truncate(small, 50<<20); err != nil {
		t.Fatal(err)
	}
	if _, err := readHeld(h); !errors.Is(err, safeopen.ErrTooLarge) {
		t.Errorf("readHeld of a grown file = %v, want ErrTooLarge", err)
	}
}
