package inventory

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"regexp"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/patchd/patchd/agent/atomicfile"
	"github.com/patchd/patchd/agent/ledger"
	"github.com/patchd/patchd/agent/uploads"
)

// Options build a Writer.
type Options struct {
	// LedgerPath is ledger.jsonl, the only source: what `patchd history`
	// prints is what the inventory holds.
	LedgerPath string
	// Dir is the custom inventory folder when set (the inventory
	// association's customInventoryDirectory); empty: the agent's default,
	// <AgentData>/<instance id>/inventory/custom.
	Dir       string
	AgentData string
	Limits    Limits
	// RetryInterval is how often a write that failed (no agent folder yet,
	// folder not writable) is tried again; a closed cycle also tries.
	RetryInterval time.Duration
	Logger        *slog.Logger
	Reg           prometheus.Registerer
	Uploads       *uploads.Tracker // nil: not recorded
}

// Writer is the actor that keeps the two files equal to the ledger.
type Writer struct {
	o       Options
	log     *slog.Logger
	notify  chan struct{}
	dropped prometheus.Gauge
	// lastErr is the last failure logged, so a folder that stays missing
	// is logged once, not at every retry.
	lastErr string
}

// New registers the metric and returns a Writer.
func New(o Options) (*Writer, error) {
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.Limits == (Limits{}) {
		o.Limits = DefaultLimits
	}
	if o.RetryInterval <= 0 {
		o.RetryInterval = 10 * time.Minute
	}
	w := &Writer{o: o, log: o.Logger, notify: make(chan struct{}, 1),
		dropped: prometheus.NewGauge(prometheus.GaugeOpts{Name: "patchd_inventory_entries_dropped",
			Help: "Ledger entries (cycles and package changes) left out of the custom inventory files at the last write, oldest first, to stay within the agent's limits."}),
	}
	if o.Reg != nil {
		if err := o.Reg.Register(w.dropped); err != nil {
			return nil, err
		}
	}
	return w, nil
}

// CycleClosed asks for a write; it never blocks (the cycle calls it).
func (w *Writer) CycleClosed(ledger.Entry) {
	select {
	case w.notify <- struct{}{}:
	default:
	}
}

// Run writes at start (the files may be missing or older than the ledger),
// after every closed cycle, and again later while a write fails.
func (w *Writer) Run(ctx context.Context) error {
	ok := w.Write()
	retry := time.NewTicker(w.o.RetryInterval)
	defer retry.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-w.notify:
			ok = w.Write()
		case <-retry.C:
			if !ok {
				ok = w.Write()
			}
		}
	}
}

// instanceDir matches the agent's per-instance folder names: EC2 instance
// ids and hybrid managed node ids. Compiled on first use: commands that
// write no inventory do not pay for it at start-up.
var instanceDir = sync.OnceValue(func() *regexp.Regexp {
	return regexp.MustCompile(`^(i-[0-9a-f]{8}([0-9a-f]{9})?|mi-[0-9a-f]{17})$`)
})

// folder finds the custom inventory folder. The default folder is created
// (as the agent would read it) only under an existing instance folder: with
// no agent installed patchd must not invent its tree.
func (w *Writer) folder() (string, string, error) {
	if w.o.Dir != "" {
		if err := os.MkdirAll(w.o.Dir, 0o755); err != nil {
			return "", uploads.ReasonWriteError, fmt.Errorf("custom inventory folder %s: %w; fix its permissions or set inventory.directory", w.o.Dir, err)
		}
		return w.o.Dir, "", nil
	}
	ents, err := os.ReadDir(w.o.AgentData)
	if err != nil {
		return "", uploads.ReasonNoAgentFolder, fmt.Errorf("amazon-ssm-agent's data folder %s: %w; the inventory is written once the agent has registered the instance", w.o.AgentData, err)
	}
	var found []string
	for _, e := range ents {
		if e.IsDir() && instanceDir().MatchString(e.Name()) {
			found = append(found, e.Name())
		}
	}
	switch len(found) {
	case 0:
		return "", uploads.ReasonNoAgentFolder, fmt.Errorf("no instance folder (i-… or mi-…) in amazon-ssm-agent's data folder %s yet; the inventory is written once the agent has registered the instance", w.o.AgentData)
	case 1:
	default:
		return "", uploads.ReasonNoAgentFolder, fmt.Errorf("several instance folders in %s (%v); set inventory.directory to the one the inventory association reads", w.o.AgentData, found)
	}
	dir := filepath.Join(w.o.AgentData, found[0], "inventory", "custom")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", uploads.ReasonWriteError, fmt.Errorf("custom inventory folder %s: %w", dir, err)
	}
	return dir, "", nil
}

// Write brings both files up to date with the ledger and reports whether
// they now are. A failure is logged (once while it stays the same) and
// counted; the ledger is only read, never changed.
func (w *Writer) Write() bool {
	reason, err := w.write()
	now := time.Now()
	if err != nil {
		if msg := err.Error(); msg != w.lastErr {
			w.log.Warn("custom inventory not written", "reason", reason, "err", err)
			w.lastErr = msg
		}
		if w.o.Uploads != nil {
			w.o.Uploads.Failure(uploads.KindInventory, reason, err, now)
		}
		return false
	}
	if w.lastErr != "" {
		w.log.Info("custom inventory written again")
		w.lastErr = ""
	}
	if w.o.Uploads != nil {
		w.o.Uploads.Success(uploads.KindInventory, now)
	}
	return true
}

func (w *Writer) write() (string, error) {
	entries, _, err := ledger.Read(w.o.LedgerPath, 0)
	if err != nil {
		return uploads.ReasonWriteError, err
	}
	dir, reason, err := w.folder()
	if err != nil {
		return reason, err
	}
	cycles, packages, dropped := Build(entries, w.o.Limits)
	n := 0
	for _, d := range dropped {
		n += d
	}
	w.dropped.Set(float64(n))
	for _, f := range []struct {
		name string
		file File
	}{{CyclesFile, cycles}, {PackagesFile, packages}} {
		data, err := json.Marshal(f.file)
		if err != nil {
			return uploads.ReasonWriteError, fmt.Errorf("custom inventory %s: encode: %w", f.name, err)
		}
		path := filepath.Join(dir, f.name)
		// Unchanged files are left alone: a start rewrites nothing, and the
		// agent's content hash sees no change.
		if old, err := os.ReadFile(path); err == nil && bytes.Equal(old, data) {
			continue
		} else if err != nil && !errors.Is(err, fs.ErrNotExist) {
			w.log.Debug("custom inventory file unreadable; rewriting it", "path", path, "err", err)
		}
		// 0644: the agent runs as root, but an operator checking what is
		// uploaded should not need to.
		if err := atomicfile.WriteFile(path, data, 0o644); err != nil {
			return uploads.ReasonWriteError, fmt.Errorf("custom inventory: %w; fix the folder's permissions or set inventory.directory", err)
		}
	}
	return "", nil
}
