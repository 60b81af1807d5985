// Package compliance sends patchd's hook and cycle results to Systems
// Manager as compliance items (PutComplianceItems, type Custom:patchd, the
// instance as the resource): the compliance pages then show, per host,
// whether the last patch run's hooks passed and whether monitoring came
// back. Reports go through a persisted outbox so that no hook ever waits on
// the network and a restart loses nothing.
package compliance

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"strconv"
	"time"

	"github.com/patchd/patchd/agent/ledger"
)

// Type is the compliance type patchd reports under.
const Type = "Custom:patchd"

// Item ids besides the hooks' <phase>/<hook>.
const (
	ItemCycle      = "cycle"
	ItemMonitoring = "monitoring-restored"
)

// Statuses and the service's limits on an item (API reference:
// ComplianceItemEntry, ComplianceExecutionSummary).
const (
	Compliant    = "COMPLIANT"
	NonCompliant = "NON_COMPLIANT"

	maxTitle       = 500
	maxDetailValue = 4096
	maxItemID      = 100
	maxExecutionID = 100
	maxItems       = 10000
)

// Item is one compliance item.
type Item struct {
	ID       string            `json:"id"`
	Title    string            `json:"title"`
	Severity string            `json:"severity"`
	Status   string            `json:"status"`
	Details  map[string]string `json:"details,omitempty"`
}

// Report is one PutComplianceItems call: the complete set of patchd's items
// for the instance (UploadType COMPLETE replaces what was there).
type Report struct {
	// CycleID is the last closed cycle the items describe.
	CycleID       string    `json:"cycle_id"`
	ExecutionID   string    `json:"execution_id"`
	ExecutionType string    `json:"execution_type"`
	ExecutionTime time.Time `json:"execution_time"`
	Items         []Item    `json:"items"`
	// Created is when patchd built the report.
	Created time.Time `json:"created"`
}

// Hash is the items' content hash (ItemContentHash): the service ignores a
// report equal to the one it has.
func (r Report) Hash() string {
	b, _ := json.Marshal(struct {
		ID    string
		Items []Item
	}{r.ExecutionID, r.Items})
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}

// Severities gives the severity of each phase's hook items and of the
// cycle's own items ("cycle").
type Severities func(phase string) string

// Overdue describes a cycle open longer than the failsafe, which makes
// monitoring-restored NON_COMPLIANT before the cycle closes.
type Overdue struct {
	CycleID   string
	CommandID string
	Opened    time.Time
	Since     time.Time // when it became overdue
}

// Build makes the report of the last closed cycle e (nil: none yet), with
// an open overdue cycle when there is one.
func Build(e *ledger.Entry, over *Overdue, sev Severities, now time.Time) Report {
	r := Report{Created: now, ExecutionType: "patchd", ExecutionTime: now}
	monitoring := Item{ID: ItemMonitoring, Title: "Monitoring restored after the last patch run", Severity: sev(ItemCycle), Status: Compliant,
		Details: map[string]string{}}
	if e != nil {
		r.CycleID, r.ExecutionTime = e.CycleID, e.Closed.UTC()
		switch {
		case e.CommandID != "":
			r.ExecutionID, r.ExecutionType = e.CommandID, "Command"
		case e.AssociationID != "":
			r.ExecutionID, r.ExecutionType = e.AssociationID, "Association"
		default:
			r.ExecutionID = e.CycleID
		}
		postFailed := 0
		for _, h := range e.Hooks {
			status := Compliant
			if h.Outcome != "success" {
				status = NonCompliant
				if h.Phase == "post-patch" {
					postFailed++
				}
			}
			r.Items = append(r.Items, Item{
				ID:       clip(h.Phase+"/"+h.Name, maxItemID),
				Title:    clip(fmt.Sprintf("patchd %s hook %s", h.Phase, h.Name), maxTitle),
				Severity: sev(h.Phase),
				Status:   status,
				Details: map[string]string{
					"Outcome": h.Outcome, "ExitCode": strconv.Itoa(h.ExitCode),
					"DurationSeconds": strconv.FormatFloat(h.Duration, 'f', 3, 64),
					"Attempt":         strconv.Itoa(h.Attempt), "CycleId": e.CycleID,
					"Error": clip(h.Error, maxDetailValue),
				},
			})
		}
		status := Compliant
		if e.Result != "success" {
			status = NonCompliant
		}
		r.Items = append(r.Items, Item{ID: ItemCycle, Title: "Last patch cycle", Severity: sev(ItemCycle), Status: status,
			Details: map[string]string{
				"CycleId": e.CycleID, "Result": e.Result, "Trigger": e.Trigger, "DocumentName": clip(e.DocumentName, maxDetailValue),
				"CommandId": e.CommandID, "AssociationId": e.AssociationID, "Closed": e.Closed.UTC().Format(time.RFC3339),
				"Rebooted": strconv.FormatBool(e.Rebooted), "Installed": strconv.Itoa(len(e.Packages.Installed)),
				"Upgraded": strconv.Itoa(len(e.Packages.Upgraded)), "Removed": strconv.Itoa(len(e.Packages.Removed)),
			}})
		monitoring.Details["CycleId"] = e.CycleID
		if postFailed > 0 {
			monitoring.Status = NonCompliant
			monitoring.Details["Reason"] = fmt.Sprintf("%d post-patch hook(s) failed", postFailed)
		}
	}
	if over != nil {
		monitoring.Status = NonCompliant
		monitoring.Details = map[string]string{"CycleId": over.CycleID, "Opened": over.Opened.UTC().Format(time.RFC3339),
			"Reason": "the cycle is open longer than cycle.failsafe_age"}
		if over.CommandID != "" {
			r.ExecutionID, r.ExecutionType = over.CommandID, "Command"
		} else {
			r.ExecutionID, r.ExecutionType = over.CycleID, "patchd"
		}
		r.ExecutionTime = over.Since.UTC()
	}
	r.Items = append(r.Items, monitoring)
	r.ExecutionID = clip(r.ExecutionID, maxExecutionID)
	if len(r.Items) > maxItems { // thousands of hooks: keep the cycle's own items
		r.Items = append(r.Items[:maxItems-2], r.Items[len(r.Items)-2:]...)
	}
	return r
}

// clip cuts s to n bytes on a rune boundary.
func clip(s string, n int) string {
	if len(s) <= n {
		return s
	}
	s = s[:n]
	for len(s) > 0 && s[len(s)-1]&0xC0 == 0x80 {
		s = s[:len(s)-1]
	}
	if len(s) > 0 && s[len(s)-1] >= 0xC0 {
		s = s[:len(s)-1]
	}
	return s
}
