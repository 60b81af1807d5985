// Package inventory writes patchd's ledger as amazon-ssm-agent custom
// inventory: two JSON files in the agent's custom inventory folder, which the
// agent's inventory plugin uploads as Custom:PatchdCycles and
// Custom:PatchdPackages each time the fleet's inventory association runs. No
// AWS call and no permission beyond what the agent already has.
//
// The agent skips a whole file that breaks one of its rules (with an ERROR in
// its own log, which nobody reads), so every rule it applies is kept here
// before a byte is written: see Limits.
package inventory

import (
	"encoding/json"
	"strconv"
	"time"

	"github.com/patchd/patchd/agent/ledger"
)

// Type names, file names and schema version of the two inventory types.
const (
	CyclesType    = "Custom:PatchdCycles"
	PackagesType  = "Custom:PatchdPackages"
	CyclesFile    = "PatchdCycles.json"
	PackagesFile  = "PatchdPackages.json"
	SchemaVersion = "1.0"
)

// Limits bound what one file holds. The agent's rules (its custom gatherer,
// agent/plugins/inventory/gatherers/custom/customGatherer.go) are fixed; the
// counts and the byte budget are patchd's, chosen to stay far inside the
// service's limits whatever else the host reports.
type Limits struct {
	// MaxCycles is the most entries of Custom:PatchdCycles.
	MaxCycles int
	// MaxPackages is the most entries of Custom:PatchdPackages.
	MaxPackages int
	// MaxFileBytes bounds each file's encoded size. The agent refuses a type
	// over 3 MiB and an upload over 10 MiB, and says the service is
	// stricter; 100 KiB per file keeps both types together at 200 KiB.
	MaxFileBytes int
}

// DefaultLimits are the limits patchd writes with.
var DefaultLimits = Limits{MaxCycles: 100, MaxPackages: 1000, MaxFileBytes: 100 << 10}

// maxValueLength is the agent's AttributeValueLengthLimit. Its other rules
// (type name, schema version, attribute count and names, at most 20 files in
// the folder) hold by construction; the tests check every one of them.
const maxValueLength = 4096

// File is one custom inventory file as the agent reads it. Content is always
// a list (the agent also accepts a single object); values are strings only.
type File struct {
	SchemaVersion string              `json:"SchemaVersion"`
	TypeName      string              `json:"TypeName"`
	Content       []map[string]string `json:"Content"`
}

// Dropped counts entries left out of the files because a limit would have
// been passed, by type name.
type Dropped map[string]int

// Build turns ledger entries (oldest first, as ledger.Read returns them) into
// the two files. When a limit would be passed the oldest entries are left
// out first, so the newest cycle and its packages always survive.
func Build(entries []ledger.Entry, lim Limits) (cycles, packages File, dropped Dropped) {
	dropped = Dropped{}
	cycles = File{SchemaVersion: SchemaVersion, TypeName: CyclesType, Content: []map[string]string{}}
	packages = File{SchemaVersion: SchemaVersion, TypeName: PackagesType, Content: []map[string]string{}}

	var cyc, pkg []map[string]string
	for _, e := range entries {
		cyc = append(cyc, cycleEntry(e))
		pkg = append(pkg, packageEntries(e)...)
	}
	cycles.Content, dropped[CyclesType] = newest(cycles, cyc, lim.MaxCycles, lim.MaxFileBytes)
	packages.Content, dropped[PackagesType] = newest(packages, pkg, lim.MaxPackages, lim.MaxFileBytes)
	return cycles, packages, dropped
}

// newest keeps the last entries of all that fit in max entries and maxBytes
// once encoded into f, and says how many it left out.
func newest(f File, all []map[string]string, max, maxBytes int) ([]map[string]string, int) {
	total := len(all)
	if max > 0 && len(all) > max {
		all = all[len(all)-max:]
	}
	// The envelope, then each entry with its separator: sizes add up
	// exactly, so one pass from the newest end finds the cut.
	f.Content = []map[string]string{}
	env, _ := json.Marshal(f)
	size := len(env)
	keep := 0
	for i := len(all) - 1; i >= 0; i-- {
		b, _ := json.Marshal(all[i])
		add := len(b)
		if keep > 0 {
			add++ // the comma
		}
		if maxBytes > 0 && size+add > maxBytes {
			break
		}
		size += add
		keep++
	}
	// Never null: the agent skips a file whose Content is missing.
	return append([]map[string]string{}, all[len(all)-keep:]...), total - keep
}

// timeFormat is how times are written: UTC, RFC 3339, as the agent writes
// its own CaptureTime, so inventory queries sort them as text.
const timeFormat = time.RFC3339

func cycleEntry(e ledger.Entry) map[string]string {
	failed := 0
	for _, h := range e.Hooks {
		if h.Outcome != "success" {
			failed++
		}
	}
	return map[string]string{
		"CycleId":       e.CycleID,
		"Opened":        e.Opened.UTC().Format(timeFormat),
		"Closed":        e.Closed.UTC().Format(timeFormat),
		"Result":        e.Result,
		"Trigger":       e.Trigger,
		"DocumentName":  clip(e.DocumentName),
		"DocumentId":    e.DocumentID,
		"CommandId":     e.CommandID,
		"AssociationId": e.AssociationID,
		"Operation":     e.Operation,
		"Rebooted":      strconv.FormatBool(e.Rebooted),
		"HooksFailed":   strconv.Itoa(failed),
		"Installed":     strconv.Itoa(len(e.Packages.Installed)),
		"Upgraded":      strconv.Itoa(len(e.Packages.Upgraded)),
		"Removed":       strconv.Itoa(len(e.Packages.Removed)),
		"PackagesError": clip(e.PackagesError),
	}
}

// packageEntries lists one entry per changed package of e, in the ledger's
// order (installed, upgraded, removed; each by name).
func packageEntries(e ledger.Entry) []map[string]string {
	at := e.Closed.UTC().Format(timeFormat)
	var out []map[string]string
	add := func(action, name, arch, from, to string) {
		out = append(out, map[string]string{
			"Name": clip(name), "Arch": clip(arch), "FromVersion": clip(from), "ToVersion": clip(to),
			"Action": action, "CycleId": e.CycleID, "Time": at,
		})
	}
	for _, p := range e.Packages.Installed {
		add("installed", p.Name, p.Arch, "", p.Version)
	}
	for _, u := range e.Packages.Upgraded {
		add("upgraded", u.Name, u.Arch, u.From, u.To)
	}
	for _, p := range e.Packages.Removed {
		add("removed", p.Name, p.Arch, p.Version, "")
	}
	return out
}

// clip keeps a value within the agent's value length, on a UTF-8 boundary.
func clip(s string) string {
	if len(s) <= maxValueLength {
		return s
	}
	s = s[:maxValueLength]
	for len(s) > 0 && !utf8Start(s[len(s)-1]) {
		s = s[:len(s)-1]
	}
	if len(s) > 0 {
		s = s[:len(s)-1] // the cut rune's first byte
	}
	return s
}

func utf8Start(b byte) bool { return b < 0x80 || b >= 0xC0 }
