package agentlog

import (
	"encoding/json"
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"
)

// A log file replaced by a FIFO while patchd was down, with the old file's
// inode number reused (the offsets then point at the FIFO), must not block
// the restore: the FIFO is passed over and the next regular file at the
// name is read.
func TestTailFIFOAtLogNameDoesNotBlock(t *testing.T) {
	h := newHarness(t)
	path := filepath.Join(h.dir, agentLog)
	if err := syscall.Mkfifo(path, 0o644); err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	dev, ino := fileID(fi)
	st := offsetsState{Version: stateVersion, Files: []fileState{{
		Name: agentLog, Dev: dev, Inode: ino, Offset: 0, FingerprintLen: 16, Fingerprint: fingerprint([]byte("2024-10-21 10:00")),
	}}}
	data, err := json.Marshal(st)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(h.state, data, 0o600); err != nil {
		t.Fatal(err)
	}

	tl, err := New(h.options())
	if err != nil {
		t.Fatal(err)
	}
	started := make(chan struct{})
	tl.started = func() { close(started) }
	h.runWith(tl.Run)
	select {
	case <-started:
	case err := <-h.done:
		t.Fatalf("Run returned at start: %v", err)
	case <-time.After(20 * time.Second):
		h.cancel = nil // a blocked Run never returns; do not wait for it
		t.Fatal("the tailer's start blocked on a FIFO at the log's name")
	}
	if err := os.Remove(path); err != nil {
		t.Fatal(err)
	}
	f := openAppend(t, path)
	h.expect(appendLines(t, f, "after", 0, 3)...)
}
