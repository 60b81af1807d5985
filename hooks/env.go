package hooks

import (
	"os"
	"strconv"
)

// DefaultPath is the PATH a hook gets: the usual system directories and
// nothing from patchd's own environment, so a hook behaves the same under
// systemd, from a shell and in a test.
const DefaultPath = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

// Environ is the whole environment of a hook: PATH, LANG=C.UTF-8 (output
// in a known encoding), HOME (root's, or patchd's own when not root) and
// the PATCHD_* variables of docs/design.md (the hook contract). Every PATCHD_* variable is
// always set, empty when unknown, so hooks can use `set -u`.
func (e Env) Environ() []string {
	attempt := e.Attempt
	if attempt < 1 {
		attempt = 1
	}
	home := "/root"
	if euid() != 0 {
		if home = os.Getenv("HOME"); home == "" {
			home = "/"
		}
	}
	trigger := e.Trigger
	if trigger == "" {
		trigger = "manual"
	}
	env := []string{
		"PATH=" + DefaultPath,
		"LANG=C.UTF-8",
		"HOME=" + home,
		"PATCHD_PHASE=" + string(e.Phase),
		"PATCHD_CYCLE_ID=" + e.CycleID,
		"PATCHD_TRIGGER=" + trigger,
		"PATCHD_DOCUMENT=" + e.Document,
		"PATCHD_DOCUMENT_ID=" + e.DocumentID,
		"PATCHD_COMMAND_ID=" + e.CommandID,
		"PATCHD_ASSOCIATION_ID=" + e.AssociationID,
		"PATCHD_OPERATION=" + e.Operation,
		"PATCHD_INSTANCE_ID=" + e.InstanceID,
		"PATCHD_REGION=" + e.Region,
		"PATCHD_ATTEMPT=" + strconv.Itoa(attempt),
		"PATCHD_DRY_RUN=" + boolEnv(e.DryRun),
	}
	if e.Phase == PostPatch {
		result := e.Result
		if result == "" {
			result = "unknown"
		}
		env = append(env, "PATCHD_RESULT="+result, "PATCHD_RESULT_REASON="+e.ResultReason, "PATCHD_REBOOTED="+boolEnv(e.Rebooted))
	}
	return env
}

func boolEnv(b bool) string {
	if b {
		return "1"
	}
	return "0"
}
