package compliance

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"time"

	"github.com/patchd/patchd/agent/atomicfile"
)

// OutboxFile is the outbox's name in the state directory.
const OutboxFile = "compliance-outbox.json"

// outbox is what waits to be sent, and what was sent last. A report is the
// complete set of patchd's items, so a newer one replaces an unsent older
// one: the outbox holds at most one.
type outbox struct {
	Pending *Report `json:"pending,omitempty"`
	// Delivered is the cycle and content hash of the last report the
	// service accepted: a start re-sends only what it has not seen.
	DeliveredCycle string    `json:"delivered_cycle,omitempty"`
	DeliveredHash  string    `json:"delivered_hash,omitempty"`
	DeliveredAt    time.Time `json:"delivered_at,omitzero"`
}

func (o *outbox) size() int {
	if o.Pending == nil {
		return 0
	}
	return 1
}

// loadOutbox reads the outbox. A file that does not parse is moved aside
// (kept for a look, never read again) and an empty outbox returned with the
// error; the caller rebuilds the report from the ledger.
func loadOutbox(path string, now time.Time) (*outbox, string, error) {
	data, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return &outbox{}, "", nil
	}
	if err != nil {
		return &outbox{}, "", fmt.Errorf("compliance outbox %s: %w", path, err)
	}
	var o outbox
	if err := json.Unmarshal(data, &o); err != nil {
		aside := fmt.Sprintf("%s.broken-%s", path, now.UTC().Format("20060102T150405Z"))
		if rerr := os.Rename(path, aside); rerr != nil {
			return &outbox{}, "", fmt.Errorf("compliance outbox %s does not parse (%v) and cannot be moved aside: %w", path, err, rerr)
		}
		return &outbox{}, aside, fmt.Errorf("compliance outbox %s does not parse (%v); moved aside to %s, the last cycle's report is rebuilt from the ledger", path, err, aside)
	}
	return &o, "", nil
}

func (o *outbox) save(path string) error {
	return atomicfile.WriteJSON(path, o, 0o600)
}
