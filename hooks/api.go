// Package hooks discovers and runs the operator's hook executables in
// /etc/patchd/hooks.d/<phase>/ under the hook contract of docs/design.md.
//
// This file is the package's contract with the rest of patchd (the cycle
// calls Discover and RunHook/RunPhase, the CLI calls the same); the runner's
// implementation lives beside it.
package hooks

import "time"

// Phase is one of the three hook phases.
type Phase string

const (
	PrePatch  Phase = "pre-patch"
	PreReboot Phase = "pre-reboot"
	PostPatch Phase = "post-patch"
)

// Phases in the order a cycle runs them.
var Phases = []Phase{PrePatch, PreReboot, PostPatch}

// State says what discovery decided about a file in a phase directory.
type State string

const (
	Runnable State = "runnable"
	Skipped  State = "skipped" // not a hook (backup file, no execute bit...): ignored
	Refused  State = "refused" // looks like a hook but is unsafe: never run, an error
)

// Hook is one file found in a phase directory.
type Hook struct {
	Phase  Phase
	Name   string // file name, the hook's identity within its phase
	Path   string // absolute path as found (may be a symlink)
	State  State
	Reason string // why Skipped or Refused, for the CLI and the log
	// Target is what runs: Path, or a symlink's checked target, so that
	// the file executed is the one that passed the checks.
	Target string
}

// Outcome is how one hook ended.
type Outcome string

const (
	Success  Outcome = "success"
	Failed   Outcome = "failed"    // exited non-zero or could not start
	TimedOut Outcome = "timed_out" // killed at its timeout
	Refusal  Outcome = "refused"   // refused by discovery; never started
	NotRun   Outcome = "not_run"   // not reached (pre-patch stopped earlier)
	DryRun   Outcome = "dry_run"   // would have run
)

// Env is what a hook is told about its run (the PATCHD_* variables).
type Env struct {
	Phase    Phase
	CycleID  string
	Trigger  string // observed | gate | manual
	Document string // the document's name (AWS-RunPatchBaseline)
	// DocumentID is the agent's id of the run: the command id for a
	// command, "<AssociationID>.<RunID>" for an association.
	DocumentID    string
	CommandID     string // commands only
	AssociationID string // associations only
	Operation     string
	InstanceID    string
	Region        string
	Attempt       int // 1 for the first run of this hook in this cycle
	DryRun        bool
	Result        string // post-patch only: success|failed|cancelled|timed_out|unknown
	// ResultReason, post-patch only, says why Result is unknown (or where
	// it came from when not from the agent's state file).
	ResultReason string
	Rebooted     bool // post-patch only
}

// Result is the record of one hook's run.
type Result struct {
	Phase      Phase
	Name       string
	Outcome    Outcome
	ExitCode   int // -1 when it did not exit on its own
	Start      time.Time
	Duration   time.Duration
	StdoutTail string // last 4 KiB
	StderrTail string // last 4 KiB
	Error      string // why it failed, when not just an exit code
	Attempt    int
	// Interrupted is set when ctx ended (patchd stopping) and the signal
	// ended the hook: it did not finish and should run again. A hook that
	// exited on its own during the stop is not interrupted.
	Interrupted bool
}
