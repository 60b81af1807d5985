package inventory

import (
	"bytes"
	"encoding/json"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/patchd/patchd/agent/ledger"
	"github.com/patchd/patchd/agent/uploads"
)

// agentRules are the rules amazon-ssm-agent's custom gatherer applies to each
// file of its custom inventory folder before uploading it; a file breaking
// one is skipped whole. Source: amazon-ssm-agent
// agent/plugins/inventory/gatherers/custom/customGatherer.go (constants
// FileSuffix, CustomInventoryTypeNamePrefix, TypeNameLengthLimit,
// CustomInventoryCountLimit, AttributeCountLimit, AttributeNameLengthLimit,
// AttributeValueLengthLimit; validateSchemaVersion's pattern; the
// string-only values of validateContentEntryAttributes; the unique type name
// check of Run), and agent/plugins/inventory/model/model.go
// (SizeLimitKBPerInventoryType, TotalSizeLimitKB, CustomInventoryItem).
var agentRules = struct {
	fileSuffix          string
	typeNamePrefix      string
	typeNameMaxLen      int
	maxFilesInFolder    int
	maxAttributes       int
	attributeNameMaxLen int
	attributeValueMax   int
	schemaVersion       *regexp.Regexp
	maxTypeBytes        int
	maxUploadBytes      int
}{
	fileSuffix:          ".json",
	typeNamePrefix:      "Custom:",
	typeNameMaxLen:      100,
	maxFilesInFolder:    20,
	maxAttributes:       50,
	attributeNameMaxLen: 64,
	attributeValueMax:   4096,
	schemaVersion:       regexp.MustCompile(`^([0-9]{1,6})(\.[0-9]{1,6})$`),
	maxTypeBytes:        3072 * 1024,
	maxUploadBytes:      10240 * 1024,
}

// checkAgentRules reads a folder as the agent's custom gatherer would and
// fails the test for every file it would skip.
func checkAgentRules(t *testing.T, dir string) map[string][]map[string]string {
	t.Helper()
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	types := map[string][]map[string]string{}
	total := 0
	n := 0
	for _, e := range ents {
		if filepath.Ext(e.Name()) != agentRules.fileSuffix {
			continue
		}
		n++
		data, err := os.ReadFile(filepath.Join(dir, e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		total += len(data)
		if len(data) > agentRules.maxTypeBytes {
			t.Errorf("%s: %d bytes, over the agent's per-type limit", e.Name(), len(data))
		}
		var f struct {
			SchemaVersion string
			TypeName      string
			Content       any
		}
		if err := json.Unmarshal(data, &f); err != nil {
			t.Errorf("%s: not JSON: %v", e.Name(), err)
			continue
		}
		if f.TypeName == "" || len(f.TypeName) > agentRules.typeNameMaxLen || !strings.HasPrefix(f.TypeName, agentRules.typeNamePrefix) {
			t.Errorf("%s: TypeName %q breaks the agent's rules", e.Name(), f.TypeName)
		}
		if _, dup := types[f.TypeName]; dup {
			t.Errorf("%s: TypeName %q is in two files", e.Name(), f.TypeName)
		}
		if !agentRules.schemaVersion.MatchString(f.SchemaVersion) {
			t.Errorf("%s: SchemaVersion %q", e.Name(), f.SchemaVersion)
		}
		list, ok := f.Content.([]any)
		if !ok {
			t.Errorf("%s: Content is not a list", e.Name())
			continue
		}
		var entries []map[string]string
		for i, raw := range list {
			m, ok := raw.(map[string]any)
			if !ok {
				t.Errorf("%s: entry %d is not an object", e.Name(), i)
				continue
			}
			if len(m) > agentRules.maxAttributes {
				t.Errorf("%s: entry %d has %d attributes", e.Name(), i, len(m))
			}
			entry := map[string]string{}
			for k, v := range m {
				if len(k) == 0 || len(k) > agentRules.attributeNameMaxLen {
					t.Errorf("%s: entry %d: attribute name %q", e.Name(), i, k)
				}
				s, ok := v.(string)
				if !ok {
					t.Errorf("%s: entry %d: %s is a %T, the agent takes strings only", e.Name(), i, k, v)
				}
				if len(s) > agentRules.attributeValueMax {
					t.Errorf("%s: entry %d: %s is %d bytes", e.Name(), i, k, len(s))
				}
				entry[k] = s
			}
			entries = append(entries, entry)
		}
		types[f.TypeName] = entries
	}
	if n > agentRules.maxFilesInFolder {
		t.Errorf("%d files, the agent reads at most %d", n, agentRules.maxFilesInFolder)
	}
	if total > agentRules.maxUploadBytes {
		t.Errorf("%d bytes in all, over the agent's upload limit", total)
	}
	return types
}

var t0 = time.Date(2026, 11, 22, 23, 0, 0, 0, time.UTC)

func entry(i int, pkgs int) ledger.Entry {
	e := ledger.Entry{
		CycleID: fmt.Sprintf("cycle-%04d", i), Trigger: "observed", Result: "success",
		Opened: t0.Add(time.Duration(i) * time.Hour), Closed: t0.Add(time.Duration(i)*time.Hour + 10*time.Minute),
		DocumentName: "AWS-RunPatchBaseline", CommandID: fmt.Sprintf("cmd-%d", i), Rebooted: i%2 == 0,
		Hooks: []ledger.HookRun{{Phase: "post-patch", Name: "10-up", Outcome: "failed"}, {Phase: "pre-patch", Name: "10-down", Outcome: "success"}},
	}
	for p := 0; p < pkgs; p++ {
		name := fmt.Sprintf("pkg-%04d-%05d", i, p)
		switch p % 3 {
		case 0:
			e.Packages.Installed = append(e.Packages.Installed, ledger.Package{Name: name, Version: "1.0", Arch: "amd64"})
		case 1:
			e.Packages.Upgraded = append(e.Packages.Upgraded, ledger.Upgrade{Name: name, Arch: "amd64", From: "1.0", To: "1.1"})
		default:
			e.Packages.Removed = append(e.Packages.Removed, ledger.Package{Name: name, Version: "0.9", Arch: "all"})
		}
	}
	return e
}

type host struct {
	agentData, ledger, dir string
}

func newHost(t *testing.T, entries ...ledger.Entry) host {
	t.Helper()
	root := t.TempDir()
	h := host{agentData: filepath.Join(root, "amazon-ssm"), ledger: filepath.Join(root, "state", ledger.FileName)}
	h.dir = filepath.Join(h.agentData, "i-0123456789abcdef0", "inventory", "custom")
	if err := os.MkdirAll(filepath.Join(h.agentData, "i-0123456789abcdef0", "document"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(filepath.Dir(h.ledger), 0o700); err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		if err := ledger.Append(h.ledger, e, 1000); err != nil {
			t.Fatal(err)
		}
	}
	return h
}

func newWriter(t *testing.T, o Options) (*Writer, *prometheus.Registry, *uploads.Tracker, *bytes.Buffer) {
	t.Helper()
	reg := prometheus.NewRegistry()
	tr, err := uploads.New(reg)
	if err != nil {
		t.Fatal(err)
	}
	var logs bytes.Buffer
	o.Reg, o.Uploads = reg, tr
	o.Logger = slog.New(slog.NewTextHandler(&logs, nil))
	w, err := New(o)
	if err != nil {
		t.Fatal(err)
	}
	return w, reg, tr, &logs
}

// The files hold what the ledger (and so `patchd history`, which prints
// ledger.Read) holds, within the agent's rules.
func TestWriteAgreesWithLedger(t *testing.T) {
	h := newHost(t, entry(1, 4), entry(2, 0), entry(3, 7))
	w, _, tr, _ := newWriter(t, Options{LedgerPath: h.ledger, AgentData: h.agentData})
	if !w.Write() {
		t.Fatal("Write failed")
	}
	types := checkAgentRules(t, h.dir)
	hist, _, err := ledger.Read(h.ledger, 0)
	if err != nil {
		t.Fatal(err)
	}
	cycles := types[CyclesType]
	if len(cycles) != len(hist) {
		t.Fatalf("%d cycles in the inventory, %d in the ledger", len(cycles), len(hist))
	}
	nPkgs := 0
	for i, e := range hist {
		c := cycles[i]
		want := map[string]string{
			"CycleId": e.CycleID, "Closed": e.Closed.Format(time.RFC3339), "Result": e.Result, "Trigger": e.Trigger,
			"DocumentName": e.DocumentName, "CommandId": e.CommandID, "Rebooted": strconv.FormatBool(e.Rebooted),
			"HooksFailed": "1", "Installed": strconv.Itoa(len(e.Packages.Installed)),
			"Upgraded": strconv.Itoa(len(e.Packages.Upgraded)), "Removed": strconv.Itoa(len(e.Packages.Removed)),
		}
		for k, v := range want {
			if c[k] != v {
				t.Errorf("cycle %d: %s = %q, ledger says %q", i, k, c[k], v)
			}
		}
		nPkgs += len(e.Packages.Installed) + len(e.Packages.Upgraded) + len(e.Packages.Removed)
	}
	pk := types[PackagesType]
	if len(pk) != nPkgs {
		t.Fatalf("%d packages in the inventory, %d in the ledger", len(pk), nPkgs)
	}
	up := map[string]map[string]string{}
	for _, p := range pk {
		up[p["Name"]] = p
	}
	if p := up["pkg-0003-00001"]; p["Action"] != "upgraded" || p["FromVersion"] != "1.0" || p["ToVersion"] != "1.1" || p["CycleId"] != "cycle-0003" || p["Time"] != "2026-11-23T02:10:00Z" {
		t.Errorf("upgraded package entry = %v", p)
	}
	if s := tr.Snapshot()[0]; s.LastSuccess.IsZero() || s.Reason != "" {
		t.Errorf("inventory status = %+v, want a success", s)
	}
}

// A cycle that changed 5,000 packages: the files stay within the agent's
// rules and patchd's budget, the newest entries survive, and the metric says
// how many were left out.
func TestHugeCycleKeepsLimitsAndNewest(t *testing.T) {
	h := newHost(t, entry(1, 30), entry(2, 5000))
	w, reg, _, _ := newWriter(t, Options{LedgerPath: h.ledger, AgentData: h.agentData})
	if !w.Write() {
		t.Fatal("Write failed")
	}
	types := checkAgentRules(t, h.dir)
	for _, name := range []string{CyclesFile, PackagesFile} {
		fi, err := os.Stat(filepath.Join(h.dir, name))
		if err != nil {
			t.Fatal(err)
		}
		if fi.Size() > int64(DefaultLimits.MaxFileBytes) {
			t.Errorf("%s is %d bytes, budget %d", name, fi.Size(), DefaultLimits.MaxFileBytes)
		}
	}
	pk := types[PackagesType]
	t.Logf("%d of 5,030 package entries kept", len(pk))
	if len(pk) == 0 || len(pk) > DefaultLimits.MaxPackages {
		t.Fatalf("%d package entries, want 1..%d", len(pk), DefaultLimits.MaxPackages)
	}
	for _, p := range pk {
		if p["CycleId"] != "cycle-0002" {
			t.Fatalf("an entry of the older cycle survived while the newest was cut: %v", p)
		}
	}
	// The newest end of the newest cycle is kept: the last removed package.
	if last := pk[len(pk)-1]["Name"]; last != "pkg-0002-04997" {
		t.Errorf("last entry %s, want the ledger's last change pkg-0002-04997", last)
	}
	if len(types[CyclesType]) != 2 {
		t.Errorf("%d cycle entries, want both", len(types[CyclesType]))
	}
	want := float64(5030 - len(pk))
	if got := gauge(w.dropped); got != want {
		t.Errorf("patchd_inventory_entries_dropped = %v, want %v", got, want)
	}
	_ = reg
}

// More cycles than the limit: the oldest go first.
func TestOldestCyclesDropFirst(t *testing.T) {
	var es []ledger.Entry
	for i := 1; i <= 30; i++ {
		es = append(es, entry(i, 0))
	}
	h := newHost(t, es...)
	w, _, _, _ := newWriter(t, Options{LedgerPath: h.ledger, AgentData: h.agentData, Limits: Limits{MaxCycles: 10, MaxPackages: 10, MaxFileBytes: 1 << 20}})
	if !w.Write() {
		t.Fatal("Write failed")
	}
	cy := checkAgentRules(t, h.dir)[CyclesType]
	if len(cy) != 10 || cy[0]["CycleId"] != "cycle-0021" || cy[9]["CycleId"] != "cycle-0030" {
		t.Errorf("kept %d cycles from %s to %s, want cycle-0021..cycle-0030", len(cy), cy[0]["CycleId"], cy[len(cy)-1]["CycleId"])
	}
	if got := gauge(w.dropped); got != 20 {
		t.Errorf("dropped = %v, want 20", got)
	}
}

// At start a missing or stale file is written, an up-to-date one is left
// alone; a write leaves no temp file for the agent to read.
func TestStartWritesMissingOrStale(t *testing.T) {
	h := newHost(t, entry(1, 2))
	w, _, _, _ := newWriter(t, Options{LedgerPath: h.ledger, AgentData: h.agentData})
	if !w.Write() {
		t.Fatal("Write failed")
	}
	cyc := filepath.Join(h.dir, CyclesFile)
	old := time.Unix(1_000_000, 0)
	if err := os.Chtimes(cyc, old, old); err != nil {
		t.Fatal(err)
	}
	// Up to date: untouched.
	if !w.Write() {
		t.Fatal("Write failed")
	}
	if fi, _ := os.Stat(cyc); !fi.ModTime().Equal(old) {
		t.Errorf("an up-to-date file was rewritten")
	}
	// A cycle closed while patchd was down: stale, rewritten.
	if err := ledger.Append(h.ledger, entry(2, 1), 1000); err != nil {
		t.Fatal(err)
	}
	if err := os.Remove(filepath.Join(h.dir, PackagesFile)); err != nil {
		t.Fatal(err)
	}
	if !w.Write() {
		t.Fatal("Write failed")
	}
	types := checkAgentRules(t, h.dir)
	if len(types[CyclesType]) != 2 || len(types[PackagesType]) != 3 {
		t.Errorf("after the stale start: %d cycles, %d packages; want 2 and 3", len(types[CyclesType]), len(types[PackagesType]))
	}
	ents, _ := os.ReadDir(h.dir)
	for _, e := range ents {
		if e.Name() != CyclesFile && e.Name() != PackagesFile {
			t.Errorf("left in the agent's folder: %s", e.Name())
		}
	}
}

// No agent installed yet, or a folder patchd cannot write: a clear log line
// (once), a counted failure, the ledger untouched; the write succeeds once
// the folder is there.
func TestBadFolders(t *testing.T) {
	t.Run("agent folder missing", func(t *testing.T) {
		root := t.TempDir()
		lpath := filepath.Join(root, ledger.FileName)
		if err := ledger.Append(lpath, entry(1, 1), 10); err != nil {
			t.Fatal(err)
		}
		before, _ := os.ReadFile(lpath)
		agentData := filepath.Join(root, "amazon-ssm")
		w, _, tr, logs := newWriter(t, Options{LedgerPath: lpath, AgentData: agentData})
		for range 2 { // a retry logs nothing new
			if w.Write() {
				t.Fatal("Write succeeded without an agent folder")
			}
		}
		if n := strings.Count(logs.String(), "custom inventory not written"); n != 1 {
			t.Errorf("logged %d times, want once:\n%s", n, logs.String())
		}
		if !strings.Contains(logs.String(), agentData) {
			t.Errorf("the log does not name the folder:\n%s", logs.String())
		}
		if _, err := os.Stat(agentData); err == nil {
			t.Errorf("patchd created the agent's data folder")
		}
		if s := tr.Snapshot()[0]; s.Reason != uploads.ReasonNoAgentFolder {
			t.Errorf("status = %+v", s)
		}
		after, _ := os.ReadFile(lpath)
		if !bytes.Equal(before, after) {
			t.Errorf("the ledger changed")
		}
		// The agent registers the instance: the next write goes through.
		if err := os.MkdirAll(filepath.Join(agentData, "i-0123456789abcdef0"), 0o755); err != nil {
			t.Fatal(err)
		}
		if !w.Write() {
			t.Fatalf("Write failed once the folder exists:\n%s", logs.String())
		}
		checkAgentRules(t, filepath.Join(agentData, "i-0123456789abcdef0", "inventory", "custom"))
	})
	t.Run("folder not writable", func(t *testing.T) {
		h := newHost(t, entry(1, 1))
		// A file where a folder must be fails as root too.
		blocker := filepath.Join(t.TempDir(), "not-a-dir")
		if err := os.WriteFile(blocker, nil, 0o644); err != nil {
			t.Fatal(err)
		}
		w, _, tr, logs := newWriter(t, Options{LedgerPath: h.ledger, AgentData: h.agentData, Dir: filepath.Join(blocker, "custom")})
		if w.Write() {
			t.Fatal("Write succeeded into a file")
		}
		if !strings.Contains(logs.String(), "not-a-dir") || !strings.Contains(logs.String(), "inventory.directory") {
			t.Errorf("the log does not say where and how to fix:\n%s", logs.String())
		}
		if s := tr.Snapshot()[0]; s.Reason != uploads.ReasonWriteError {
			t.Errorf("status = %+v", s)
		}
		if es, _, err := ledger.Read(h.ledger, 0); err != nil || len(es) != 1 {
			t.Errorf("ledger after the failure: %d entries, %v", len(es), err)
		}
	})
}

// Values longer than the agent takes are cut on a rune boundary.
func TestClip(t *testing.T) {
	long := strings.Repeat("é", 3000) // 6000 bytes
	c := clip(long)
	if len(c) > agentRules.attributeValueMax || !strings.HasPrefix(long, c) || strings.ContainsRune(c, '\uFFFD') {
		t.Errorf("clip gave %d bytes", len(c))
	}
	if !json.Valid([]byte(strconv.Quote(c))) {
		t.Errorf("not valid")
	}
}

func gauge(g prometheus.Gauge) float64 {
	var m dto.Metric
	if err := g.Write(&m); err != nil {
		return -1
	}
	return m.GetGauge().GetValue()
}
