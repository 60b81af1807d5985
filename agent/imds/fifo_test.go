package imds

import (
	"errors"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/patchd/patchd/agent/safeopen"
)

// A FIFO where the role state file belongs is refused, not waited on.
func TestLoadStateRefusesFIFO(t *testing.T) {
	path := filepath.Join(t.TempDir(), "role.json")
	if err := syscall.Mkfifo(path, 0o600); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() {
		_, _, err := LoadState(path)
		done <- err
	}()
	select {
	case err := <-done:
		if !errors.Is(err, safeopen.ErrNotRegular) {
			t.Fatalf("LoadState(FIFO) = %v, want ErrNotRegular", err)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("LoadState blocked on a FIFO")
	}
}
