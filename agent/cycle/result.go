package cycle

import (
	"fmt"
	"path"
	"strings"

	"github.com/patchd/patchd/agent/agentlog"
	"github.com/patchd/patchd/agent/ssm"
)

// finalStatus says whether the agent writes status as the last one of a
// document or step. SuccessAndReboot and PassedAndReboot are not: the agent
// keeps the file, resumes the document after the boot, runs the step that
// asked for the reboot again and writes its real end then
// (agent/framework/runpluginutil/runpluginutil.go resets it to InProgress).
func finalStatus(s string) bool {
	switch s {
	case ssm.StatusSuccess, ssm.StatusFailed, ssm.StatusCancelled, ssm.StatusTimedOut,
		ssm.StatusTestPass, ssm.StatusTestFailure:
		return true
	}
	return false
}

// knownEnd is the document's final status as last seen ("" when what was
// seen is not final): the document's own, or the steps' when all ended
// (the document status can lag them).
func knownEnd(status string, steps map[string]string) (string, bool) {
	if finalStatus(status) {
		return status, true
	}
	if isReboot(status) || len(steps) == 0 {
		return "", false
	}
	for _, s := range steps {
		if !finalStatus(s) && s != ssm.StatusSkipped {
			return "", false
		}
	}
	return "", true // resultOf decides from the steps
}

// endResult is PATCHD_RESULT, and why when it is unknown, for a document
// that has left the agent's folders. status and steps are the last seen;
// watched says whether patchd saw it leave.
//
// The agent writes the final status into the state file and deletes the
// file well under a millisecond later; it never writes completed/. When
// patchd did not see that write, nothing else on the host records the
// status at the agent's default settings: its log says that a command
// completed but not how, and the orchestration folder keeps each step's
// stdout and stderr but no exit status. The one exception is the log line
// of the orchestration cleanup (when the agent is configured to clean up),
// which names the status; d.LogStatus holds it when it was seen.
func endResult(d Document, status string, steps map[string]string, watched, corrupt bool) (result, reason string) {
	if corrupt {
		return ResultUnknown, "amazon-ssm-agent moved the state file to corrupt/ (unreadable, resumed too often, or too old), so its final status is unknown"
	}
	if _, ok := knownEnd(status, steps); ok {
		return resultOf(status, steps, false), ""
	}
	if finalStatus(d.LogStatus) {
		return resultOf(d.LogStatus, nil, false), "the state file left before its final status was read; the status " + d.LogStatus + " is from the agent's log"
	}
	last := status
	if last == "" {
		last = "none"
	}
	if watched {
		return ResultUnknown, fmt.Sprintf("the agent deleted the state file before patchd could read its final status (last status seen: %s)", last)
	}
	return ResultUnknown, fmt.Sprintf("the patch command ended while patchd was not watching; the last status seen (%s) is not final, and the agent keeps no record of the final one (its log names none, its orchestration folder keeps only output)", last)
}

// cleanupMarker starts the agent's one log line that names a document's
// final status (agent/framework/runpluginutil/runpluginutil.go,
// orchestrationDirCleanup), logged when the agent is configured to delete
// the orchestration folder of finished commands.
const cleanupMarker = "orchestration cleanup started for the command with status "

// cleanupStatus reads that line: the status and the orchestration folder
// it deletes.
func cleanupStatus(ev agentlog.Event) (status, dir string, ok bool) {
	i := strings.Index(ev.Message, cleanupMarker)
	if i < 0 {
		return "", "", false
	}
	rest := ev.Message[i+len(cleanupMarker):]
	status, dir, ok = strings.Cut(rest, " - deleting orchestration directory: ")
	if !ok || !finalStatus(status) {
		return "", "", false
	}
	dir = strings.TrimRight(strings.TrimSpace(strings.ReplaceAll(dir, "\\", "/")), "/")
	return status, dir, dir != ""
}

// orchestrationOf says whether dir is the orchestration folder of d: the
// agent names it after the command id (agent/runcommand/utils.go), or
// <AssociationID>/<RunID> for an association (agent/association/parser).
func orchestrationOf(dir string, d Document) bool {
	base := path.Base(dir)
	if d.DocumentID == "" {
		return false
	}
	return base == d.DocumentID || (d.CommandID != "" && base == d.CommandID) ||
		path.Base(path.Dir(dir))+"."+base == d.DocumentID
}
