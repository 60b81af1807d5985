package hoststate

// The Linux patch payload of AWS-RunPatchBaseline saves, after each Scan or
// Install, the patch summary it uploads as inventory into
// /var/log/amazon/ssm/patch-configuration/patch-inventory-from-last-operation.json
// (INVENTORY_PATH in patch_common/constant_repository.py; the document is
// built by _get_patch_summary_item in patch_common/package_compliance.py of
// the payload, as kept in github:tekumara/aws-ssm-patch-manager together with
// a real file from an instance, copied to testdata/). Its counts are strings.
// The other file there, patch-states-configuration.json, lists per-package
// states the summary already counts, so it is not read.

import (
	"encoding/json"
	"fmt"
	"strconv"
	"time"
)

// PatchSummaryFile is the summary's name inside the patch-configuration dir.
const PatchSummaryFile = "patch-inventory-from-last-operation.json"

// PatchStates are the summary's count fields, keyed by the state label patchd
// exports them under, in a fixed order.
var PatchStates = []struct{ Label, Field string }{
	{"installed", "InstalledCount"},
	{"installed_other", "InstalledOtherCount"},
	{"installed_pending_reboot", "InstalledPendingRebootCount"},
	{"installed_rejected", "InstalledRejectedCount"},
	{"missing", "MissingCount"},
	{"failed", "FailedCount"},
	{"not_applicable", "NotApplicableCount"},
}

// NonCompliantClasses are the summary's non-compliance counts.
var NonCompliantClasses = []struct{ Label, Field string }{
	{"critical", "CriticalNonCompliantCount"},
	{"security", "SecurityNonCompliantCount"},
	{"other", "OtherNonCompliantCount"},
}

// PatchSummary is what patchd takes from the file.
type PatchSummary struct {
	States       map[string]float64
	NonCompliant map[string]float64
	// Operation is Scan or Install.
	Operation string
	End       time.Time
}

// ParsePatchSummary reads the file. An unknown TypeName or SchemaVersion, or
// a missing count, is an error naming what was found: the schema is the
// payload's, not a published one, so patchd reports rather than guesses.
func ParsePatchSummary(data []byte) (PatchSummary, error) {
	var doc struct {
		TypeName      string
		SchemaVersion string
		Content       []map[string]any
	}
	if err := json.Unmarshal(data, &doc); err != nil {
		return PatchSummary{}, fmt.Errorf("not JSON: %w", err)
	}
	if doc.TypeName != "AWS:PatchSummary" || doc.SchemaVersion != "1.0" {
		return PatchSummary{}, fmt.Errorf("unknown schema TypeName=%q SchemaVersion=%q (patchd reads AWS:PatchSummary 1.0)", doc.TypeName, doc.SchemaVersion)
	}
	if len(doc.Content) != 1 {
		return PatchSummary{}, fmt.Errorf("unknown schema: Content has %d entries, want 1", len(doc.Content))
	}
	c := doc.Content[0]
	s := PatchSummary{States: map[string]float64{}, NonCompliant: map[string]float64{}}
	count := func(field string) (float64, error) {
		v, ok := c[field]
		if !ok {
			return 0, fmt.Errorf("unknown schema: Content has no %s", field)
		}
		var n float64
		switch x := v.(type) {
		case string:
			i, err := strconv.ParseUint(x, 10, 63)
			if err != nil {
				return 0, fmt.Errorf("unknown schema: %s is %q, not a count", field, x)
			}
			n = float64(i)
		case float64:
			if x < 0 || x != float64(int64(x)) {
				return 0, fmt.Errorf("unknown schema: %s is %v, not a count", field, x)
			}
			n = x
		default:
			return 0, fmt.Errorf("unknown schema: %s is %T, not a count", field, v)
		}
		return n, nil
	}
	for _, st := range PatchStates {
		n, err := count(st.Field)
		if err != nil {
			return PatchSummary{}, err
		}
		s.States[st.Label] = n
	}
	for _, cl := range NonCompliantClasses {
		n, err := count(cl.Field)
		if err != nil {
			return PatchSummary{}, err
		}
		s.NonCompliant[cl.Label] = n
	}
	op, _ := c["OperationType"].(string)
	switch op {
	case "Scan", "Install":
		s.Operation = op
	default:
		return PatchSummary{}, fmt.Errorf("unknown schema: OperationType %q, want Scan or Install", op)
	}
	end, _ := c["OperationEndTime"].(string)
	t, err := time.Parse("2006-01-02T15:04:05Z", end)
	if err != nil {
		return PatchSummary{}, fmt.Errorf("unknown schema: OperationEndTime %q: %w", end, err)
	}
	s.End = t
	return s, nil
}
