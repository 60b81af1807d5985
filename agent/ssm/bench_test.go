package ssm_test

import (
	"context"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/patchd/patchd/agent/ssm"
	"github.com/patchd/patchd/agent/ssm/ssmsim"
)

// BenchmarkStateFileToEvent measures how long a state file that appears in
// current/ takes to become a Seen event at the sink: what the cycle adds to
// before its first hook starts. Run with at least 200 iterations, e.g.
//
//	go test -run '^$' -bench StateFileToEvent -benchtime 400x ./agent/ssm/
//
// "write": the file is written into current/ in place (truncate + write, as
// the agent persists state). "rename": the agent's move from pending/.
func BenchmarkStateFileToEvent(b *testing.B) {
	for _, mode := range []string{"write", "rename"} {
		b.Run(mode, func(b *testing.B) {
			root := b.TempDir()
			a := ssmsim.New(root, "i-0a1b2c3d4e5f60718", "")
			if err := a.Init(); err != nil {
				b.Fatal(err)
			}
			events := make(chan ssm.CommandEvent, 16)
			started := make(chan struct{})
			w := ssm.NewWatcher(root, nil, slog.New(slog.DiscardHandler), prometheus.NewRegistry(),
				func(ev ssm.CommandEvent) { events <- ev }, ssm.WithStarted(func() { close(started) }))
			ctx, cancel := context.WithCancel(context.Background())
			done := make(chan error, 1)
			go func() { done <- w.Run(ctx) }()
			defer func() { cancel(); <-done }()
			<-started
			wait := func(kind ssm.EventKind, folder ssm.Folder, id string) {
				deadline := time.After(eventWait)
				for {
					select {
					case ev := <-events:
						if ev.Kind == kind && ev.Folder == folder && ev.DocumentID == id {
							return
						}
					case <-deadline:
						b.Fatalf("no %s %s event for %s", kind, folder, id)
					}
				}
			}
			lat := make([]time.Duration, 0, b.N)
			b.ResetTimer()
			for range b.N {
				b.StopTimer()
				d := a.Build(ssmsim.RunPatchBaseline("Install", "NoReboot"))
				data, err := d.State.Marshal()
				if err != nil {
					b.Fatal(err)
				}
				cur := filepath.Join(a.StateDir(ssm.Current), d.ID())
				if mode == "rename" {
					if err := d.Rewrite(); err != nil {
						b.Fatal(err)
					}
					wait(ssm.Seen, ssm.Pending, d.ID())
				}
				b.StartTimer()
				t0 := time.Now()
				if mode == "rename" {
					err = os.Rename(d.Path(), cur)
				} else {
					err = os.WriteFile(cur, data, ssmsim.FileMode)
				}
				if err != nil {
					b.Fatal(err)
				}
				wait(ssm.Seen, ssm.Current, d.ID())
				lat = append(lat, time.Since(t0))
				b.StopTimer()
				if err := os.Remove(cur); err != nil {
					b.Fatal(err)
				}
				wait(ssm.Gone, "", d.ID())
				b.StartTimer()
			}
			b.StopTimer()
			slices.Sort(lat)
			b.ReportMetric(float64(lat[len(lat)/2].Microseconds()), "p50-µs")
			b.ReportMetric(float64(lat[(len(lat)*99+99)/100-1].Microseconds()), "p99-µs")
			b.ReportMetric(float64(lat[len(lat)-1].Microseconds()), "max-µs")
		})
	}
}
