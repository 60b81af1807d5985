package imds

import (
	"context"
	"runtime"
	"testing"
	"time"

	"github.com/jonboulle/clockwork"
)

// endlessBytes is what the fake's "endless" fault sends at most.
const endlessBytes = 64 << 20

// An answer that never ends is cut at MaxAnswerSize: it is a bad response,
// and what patchd buffers stays small however long the timeout.
func TestEndlessAnswerIsCut(t *testing.T) {
	f, srv := newFakeIMDS(t, profA)
	tw := newTestWatcher(t, srv.URL, t.TempDir(), clockwork.NewFakeClock())
	tw.SetConfig(srv.URL, time.Minute, 30*time.Second)
	ctx := context.Background()
	if o := tw.Poll(ctx); !o.Known || o.Identity != profA {
		t.Fatalf("baseline poll = %+v", o)
	}
	f.set("endless", profA)
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	o := tw.Poll(ctx)
	runtime.ReadMemStats(&after)
	if o.Err == nil || o.Err.Kind != KindBadResponse || o.Changed {
		t.Fatalf("poll of an endless answer = %+v, want a bad_response error and no change", o)
	}
	if alloc := after.TotalAlloc - before.TotalAlloc; alloc > endlessBytes/2 {
		t.Fatalf("reading an endless answer allocated %d MiB", alloc>>20)
	}
}
