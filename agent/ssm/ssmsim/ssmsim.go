// Package ssmsim plays amazon-ssm-agent on disk: it writes document state
// files and agent log lines in the agent's formats, folders and file modes,
// and moves, rewrites and deletes them in the order the agent does, so that
// patchd's watchers and the whole daemon can be tested without the agent.
//
// What it mimics, and where that comes from in github.com/aws/amazon-ssm-agent:
//   - state folders <root>/<instance-id>/document/state/{pending,current,corrupt},
//     created 0700 at start-up, completed/ removed
//     (agent/framework/coremanager/coremanager.go initializeBookkeepingLocations,
//     agent/fileutil MakeDirs, agent/appconfig ReadWriteExecuteAccess);
//   - state files written in place with mode 0600, not atomically: truncate,
//     then write (agent/framework/docmanager/docmanager.go PersistDocumentState,
//     agent/fileutil/fileutil.go WriteIntoFileWithPermissions);
//   - submit to pending/, rename to current/ when the run starts, delete from
//     current/ when it is over, file kept in current/ on SuccessAndReboot,
//     RunCount+1 on resume, rename to corrupt/ when unreadable
//     (agent/framework/processor/processor.go).
package ssmsim

import (
	"crypto/rand"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/patchd/patchd/agent/ssm"
)

// Modes the agent uses (agent/appconfig/constants.go).
const (
	FileMode = 0o600
	DirMode  = 0o700
)

// Agent is one simulated agent installation.
type Agent struct {
	// Root is the agent data directory (/var/lib/amazon/ssm).
	Root string
	// InstanceID names the instance folder (i-… or mi-…).
	InstanceID string
	// Log receives the agent's log lines; nil writes none.
	Log *Log
	// Now is the clock; nil means time.Now.
	Now func() time.Time
	// SaveAtEndOnly writes the state file as the agent's default
	// (out-of-process) executer does: at start with ProcInfo and at the end
	// of the document or the reboot request, nothing in between; step
	// starts and ends stay in memory (agent/framework/processor/executer/
	// outofproc/master.go Run). Off, every step start and end is written
	// too, which gives tests more to wait on.
	SaveAtEndOnly bool
	// OrchestrationCleanup is the agent's Ssm.OrchestrationDirectoryCleanup
	// setting: "" (its default) keeps every orchestration folder;
	// "clean-success" deletes a successful document's, "clean-success-failed"
	// a successful or failed one's, logging the status as it does so
	// (agent/framework/runpluginutil/runpluginutil.go orchestrationDirCleanup).
	OrchestrationCleanup string
}

// New returns an agent for root and instanceID, logging to logDir when it
// is not empty.
func New(root, instanceID, logDir string) *Agent {
	a := &Agent{Root: root, InstanceID: instanceID}
	if logDir != "" {
		a.Log = NewLog(logDir)
		a.Log.Now = a.now
	}
	return a
}

func (a *Agent) now() time.Time {
	if a.Now != nil {
		return a.Now()
	}
	return time.Now()
}

// StateDir is the agent's state folder f.
func (a *Agent) StateDir(f ssm.Folder) string { return ssm.StateDir(a.Root, a.InstanceID, f) }

// OrchestrationRoot is where step output goes.
func (a *Agent) OrchestrationRoot() string {
	return filepath.Join(a.Root, a.InstanceID, "document", "orchestration")
}

// Init creates the state folders as the agent does at start-up (and
// removes the legacy completed/ folder).
func (a *Agent) Init() error {
	_ = os.RemoveAll(filepath.Join(a.Root, a.InstanceID, "document", "state", "completed"))
	for _, f := range []ssm.Folder{ssm.Pending, ssm.Current, "completed", ssm.Corrupt} {
		if err := os.MkdirAll(a.StateDir(f), DirMode); err != nil {
			return fmt.Errorf("create state folder: %w", err)
		}
	}
	a.logf("INFO", "[amazon-ssm-agent]", "Initializing bookkeeping folders")
	return nil
}

func (a *Agent) logf(level, tags, format string, args ...any) {
	if a.Log == nil {
		return
	}
	_ = a.Log.Line(level, tags, fmt.Sprintf(format, args...))
}

// NewCommandID returns a random id in the Run Command format (a UUID).
func NewCommandID() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	return fmt.Sprintf("%x-%x-%x-%x-%x", b[0:4], b[4:6], b[6:8], b[8:10], b[10:16])
}

// isoDash is the agent's RunID format (agent/times ToIsoDashUTC).
func isoDash(t time.Time) string {
	t = t.UTC()
	return fmt.Sprintf("%04d-%02d-%02dT%02d-%02d-%02d.%03dZ", t.Year(), t.Month(), t.Day(),
		t.Hour(), t.Minute(), t.Second(), t.Nanosecond()/1e6)
}

// iso8601 is the agent's CreatedDate format (agent/times ToIso8601UTC).
func iso8601(t time.Time) string {
	t = t.UTC()
	return fmt.Sprintf("%04d-%02d-%02dT%02d:%02d:%02d.%03dZ", t.Year(), t.Month(), t.Day(),
		t.Hour(), t.Minute(), t.Second(), t.Nanosecond()/1e6)
}

// Doc is one document the simulated agent runs.
type Doc struct {
	a      *Agent
	State  *ssm.DocumentState
	Folder ssm.Folder
}

// ID is the document's file name.
func (d *Doc) ID() string { return d.State.DocumentInformation.DocumentID }

// Path is where the state file is now.
func (d *Doc) Path() string { return filepath.Join(d.a.StateDir(d.Folder), d.ID()) }

// jobID is what the agent's processor logs for a document.
func (d *Doc) jobID() string {
	if d.State.DocumentType == ssm.TypeAssociation {
		return d.State.DocumentInformation.AssociationID
	}
	return d.State.DocumentInformation.MessageID
}

// Build makes the document's state without writing it (Folder pending/),
// for tests that write it their own way.
func (a *Agent) Build(spec Spec) *Doc {
	return &Doc{a: a, State: spec.state(a, a.now()), Folder: ssm.Pending}
}

// Submit writes a new document to pending/ as the agent does when the
// service sends it. CommandID (or, for an association, RunID) is made up
// unless spec sets it.
func (a *Agent) Submit(spec Spec) (*Doc, error) {
	d := a.Build(spec)
	a.logf("INFO", "[ssm-agent-worker] [MessageService] [EngineProcessor]", "document %s submission started", d.jobID())
	if err := d.write(); err != nil {
		return nil, err
	}
	a.logf("INFO", "[ssm-agent-worker] [MessageService] [EngineProcessor]", "document %s submission ended", d.jobID())
	return d, nil
}

// Open loads a document already on disk (current/ first, then pending/,
// then corrupt/), so a shell script can drive one document through several
// invocations of the CLI.
func (a *Agent) Open(docID string) (*Doc, error) {
	for _, f := range []ssm.Folder{ssm.Current, ssm.Pending, ssm.Corrupt} {
		p := filepath.Join(a.StateDir(f), docID)
		st, err := ssm.ReadState(p)
		if errors.Is(err, fs.ErrNotExist) {
			continue
		}
		if err != nil {
			return nil, err
		}
		return &Doc{a: a, State: st, Folder: f}, nil
	}
	return nil, fmt.Errorf("document %s: no state file under %s", docID, filepath.Dir(a.StateDir(ssm.Current)))
}

// write persists the state in place, as the agent does: truncate, write.
// A reader may see the file empty or, for a moment, partly written.
func (d *Doc) write() error {
	data, err := d.State.Marshal()
	if err != nil {
		return err
	}
	return os.WriteFile(d.Path(), data, FileMode)
}

// WritePartial writes only the first n bytes of the state, as a reader
// would see it in the middle of the agent's write (or after a crash in it).
// A later call to Rewrite completes it.
func (d *Doc) WritePartial(n int) error {
	data, err := d.State.Marshal()
	if err != nil {
		return err
	}
	if n > len(data) {
		n = len(data)
	}
	return os.WriteFile(d.Path(), data[:n], FileMode)
}

// Rewrite writes the current state again (the agent rewrites the file many
// times without a status change).
func (d *Doc) Rewrite() error { return d.write() }

func (d *Doc) move(to ssm.Folder) error {
	from := d.Path()
	if err := os.Rename(from, filepath.Join(d.a.StateDir(to), d.ID())); err != nil {
		return fmt.Errorf("move %s to %s/: %w", from, to, err)
	}
	d.Folder = to
	return nil
}

// Start moves the document from pending/ to current/ (the worker picked it
// up) and then records the document worker process in ProcInfo.
func (d *Doc) Start() error {
	if err := d.move(ssm.Current); err != nil {
		return err
	}
	d.a.logf("INFO", "[ssm-agent-worker] [MessageService] [EngineProcessor] [OutOfProcExecuter] ["+d.ID()+"]",
		"document: %s worker started", d.ID())
	d.State.DocumentInformation.ProcInfo = ssm.OSProcInfo{Pid: 4000 + int(d.a.now().UnixNano()%1000), StartTime: d.a.now().UTC()}
	return d.write()
}

// skipOtherPlatforms marks the steps whose precondition names another
// platform Skipped, as the Linux agent does.
func (d *Doc) skipOtherPlatforms() {
	for i := range d.State.InstancePluginsInformation {
		p := &d.State.InstancePluginsInformation[i]
		args := p.Configuration.Preconditions["StringEquals"]
		if len(args) == 2 && args[0].ResolvedArgumentValue == "platformType" && args[1].ResolvedArgumentValue != "Linux" && p.Result.Status == "" {
			now := d.a.now().UTC()
			p.Result = ssm.PluginResult{PluginID: p.Id, PluginName: p.Name, Status: ssm.StatusSkipped,
				StartDateTime: now, EndDateTime: now, StepName: p.Id,
				Output: "Step execution skipped due to unsatisfied preconditions: '" + "StringEquals: [platformType, " + args[1].ResolvedArgumentValue + "]'. Step name: " + p.Id}
		}
	}
}

func (d *Doc) step(name string) (*ssm.PluginState, error) {
	if name == "" {
		d.skipOtherPlatforms()
		for i := range d.State.InstancePluginsInformation {
			p := &d.State.InstancePluginsInformation[i]
			if p.Result.Status == "" || p.Result.Status == ssm.StatusInProgress || p.Result.Status == ssm.StatusSuccessAndReboot {
				return p, nil
			}
		}
		return nil, fmt.Errorf("document %s: no step left to run", d.ID())
	}
	for i := range d.State.InstancePluginsInformation {
		if p := &d.State.InstancePluginsInformation[i]; p.Id == name {
			return p, nil
		}
	}
	return nil, fmt.Errorf("document %s has no step %q", d.ID(), name)
}

// RunStep marks a step InProgress ("" = the first step not yet finished).
func (d *Doc) RunStep(name string) error {
	d.skipOtherPlatforms()
	p, err := d.step(name)
	if err != nil {
		return err
	}
	now := d.a.now().UTC()
	p.Result = ssm.PluginResult{PluginID: p.Id, PluginName: p.Name, Status: ssm.StatusInProgress,
		StartDateTime: now, StepName: p.Id}
	d.a.logf("INFO", "[ssm-document-worker] ["+d.ID()+"]", "Running plugin %s %s", p.Name, p.Id)
	if d.a.SaveAtEndOnly {
		return nil
	}
	return d.write()
}

// FinishStep records a step's end. status is a result status (Success,
// Failed, SuccessAndReboot, ...); code is its exit code. The step's stdout
// and stderr go to the orchestration folder as the agent keeps them.
func (d *Doc) FinishStep(name, status string, code int, stdout string) error {
	p, err := d.step(name)
	if err != nil {
		return err
	}
	now := d.a.now().UTC()
	start := p.Result.StartDateTime
	if start.IsZero() {
		start = now
	}
	p.Result = ssm.PluginResult{PluginID: p.Id, PluginName: p.Name, Status: status, Code: code,
		Output: stdout, StartDateTime: start, EndDateTime: now, StepName: p.Id, StandardOutput: stdout}
	if status == ssm.StatusSuccessAndReboot {
		d.State.DocumentInformation.DocumentStatus = ssm.StatusSuccessAndReboot
	}
	// Step output: <orchestration>/<plugin without punctuation>/<step>/,
	// e.g. awsrunShellScript/PatchLinux/stdout.
	if root := d.State.IOConfig.OrchestrationDirectory; root != "" {
		clean := strings.NewReplacer(":", "", ".", "")
		dir := filepath.Join(root, clean.Replace(p.Name), clean.Replace(p.Id))
		if err := os.MkdirAll(dir, DirMode); err == nil {
			_ = os.WriteFile(filepath.Join(dir, "stdout"), []byte(stdout), FileMode)
			_ = os.WriteFile(filepath.Join(dir, "stderr"), nil, FileMode)
		}
	}
	if d.a.SaveAtEndOnly {
		return nil
	}
	return d.write()
}

// RequestReboot ends the running step with exit code 194: the step and the
// document become SuccessAndReboot, the file stays in current/ and the
// agent asks the system to reboot.
func (d *Doc) RequestReboot(step string) error {
	if err := d.FinishStep(step, ssm.StatusSuccessAndReboot, 194, "Reboot requested by the patch operation.\n"); err != nil {
		return err
	}
	if d.a.SaveAtEndOnly {
		if err := d.write(); err != nil {
			return err
		}
	}
	d.a.logf("INFO", "[ssm-agent-worker] [MessageService] [EngineProcessor]", "document %s requested reboot, need to resume", d.State.DocumentInformation.MessageID)
	d.a.logf("INFO", "[ssm-agent-worker] [MessageService] [EngineProcessor]", "successfully requested a reboot")
	return nil
}

// Resume is the agent's start after the reboot: the document found in
// current/ is rewritten with RunCount+1 and the step that asked for the
// reboot runs again from its start.
func (d *Doc) Resume() error {
	d.a.logf("INFO", "[ssm-agent-worker] [MessageService] [EngineProcessor]", "Found in-progress document - %s", d.ID())
	d.State.DocumentInformation.RunCount++
	if err := d.write(); err != nil {
		return err
	}
	d.a.logf("INFO", "[ssm-agent-worker] [MessageService] [EngineProcessor]", "Processing in-progress document %s", d.ID())
	if d.a.SaveAtEndOnly {
		// A new document worker: saved at its start.
		d.State.DocumentInformation.ProcInfo = ssm.OSProcInfo{Pid: 5000 + int(d.a.now().UnixNano()%1000), StartTime: d.a.now().UTC()}
		if err := d.write(); err != nil {
			return err
		}
	}
	for i := range d.State.InstancePluginsInformation {
		p := &d.State.InstancePluginsInformation[i]
		if p.Result.Status == ssm.StatusSuccessAndReboot || p.Result.Status == ssm.StatusInProgress {
			d.State.DocumentInformation.DocumentStatus = ssm.StatusInProgress
			return d.RunStep(p.Id)
		}
	}
	return nil
}

// Finish writes the final document status and deletes the state file from
// current/ ("execution of … is over"). The orchestration folder stays.
func (d *Doc) Finish(status string) error {
	if status == "" {
		status = ssm.StatusSuccess
	}
	// A step still running ends first, with the document's status.
	for i := range d.State.InstancePluginsInformation {
		p := &d.State.InstancePluginsInformation[i]
		if p.Result.Status == ssm.StatusInProgress {
			now := d.a.now().UTC()
			p.Result.Status, p.Result.EndDateTime = status, now
			if status != ssm.StatusSuccess {
				p.Result.Code = 1
			}
		}
	}
	d.cleanOrchestration(status)
	d.State.DocumentInformation.DocumentStatus = status
	if err := d.write(); err != nil {
		return err
	}
	mid := d.State.DocumentInformation.MessageID
	d.a.logf("INFO", "[ssm-agent-worker] [MessageService] [EngineProcessor]", "sending document: %s complete response", d.ID())
	d.a.logf("INFO", "[ssm-agent-worker] [MessageService] [MDSInteractor]", "command: %s complete", mid)
	d.a.logf("INFO", "[ssm-agent-worker] [MessageService] [EngineProcessor]", "execution of %s is over. Removing interimState from current folder", mid)
	if err := os.Remove(d.Path()); err != nil {
		return fmt.Errorf("remove %s: %w", d.Path(), err)
	}
	d.Folder = ""
	return nil
}

// cleanOrchestration is the document worker's clean-up at the end of its
// steps, before the agent writes the final status: when configured for the
// status, it logs that status and deletes the orchestration folder.
func (d *Doc) cleanOrchestration(status string) {
	dir := d.State.IOConfig.OrchestrationDirectory
	clean := map[string][]string{
		"clean-success":        {ssm.StatusSuccess},
		"clean-success-failed": {ssm.StatusSuccess, ssm.StatusFailed},
	}[d.a.OrchestrationCleanup]
	if dir == "" || !slices.Contains(clean, status) {
		return
	}
	d.a.logf("INFO", "[ssm-document-worker] ["+d.ID()+"]",
		"orchestration cleanup started for the command with status %s - deleting orchestration directory: %s", status, dir)
	_ = os.RemoveAll(dir)
}

// Corrupt moves the state file to corrupt/, as the agent does with a file
// it cannot read, after too many resumes, or for a command older than 48 h.
func (d *Doc) Corrupt() error {
	return d.move(ssm.Corrupt)
}

// CorruptID moves a document's state file to corrupt/ without reading it,
// as the agent does with a file it cannot parse.
func (a *Agent) CorruptID(docID string) error {
	for _, f := range []ssm.Folder{ssm.Current, ssm.Pending} {
		p := filepath.Join(a.StateDir(f), docID)
		if _, err := os.Lstat(p); err != nil {
			continue
		}
		a.logf("INFO", "[ssm-agent-worker] [MessageService] [EngineProcessor]", "Document contents: (unreadable)")
		return os.Rename(p, filepath.Join(a.StateDir(ssm.Corrupt), docID))
	}
	return fmt.Errorf("document %s: no state file in pending/ or current/", docID)
}

// Run plays a whole run: start, every step (the last one ends with status,
// or asks for a reboot when reboot is set), then the end. pause is called
// between the steps (nil: no pause), so a caller can wait or sync.
func (d *Doc) Run(status string, reboot bool, pause func()) error {
	if pause == nil {
		pause = func() {}
	}
	if d.Folder == ssm.Pending {
		if err := d.Start(); err != nil {
			return err
		}
		pause()
	}
	for {
		p, err := d.step("")
		if err != nil {
			break
		}
		if p.Result.Status != ssm.StatusInProgress {
			if err := d.RunStep(p.Id); err != nil {
				return err
			}
			pause()
		}
		last := true
		for _, q := range d.State.InstancePluginsInformation {
			if q.Id != p.Id && (q.Result.Status == "" || q.Result.Status == ssm.StatusInProgress) {
				last = false
			}
		}
		st := ssm.StatusSuccess
		if last && reboot {
			return d.RequestReboot(p.Id)
		}
		if last && status != "" && status != ssm.StatusSuccess {
			st = status
		}
		code := 0
		if st != ssm.StatusSuccess {
			code = 1
		}
		if err := d.FinishStep(p.Id, st, code, "done\n"); err != nil {
			return err
		}
		pause()
	}
	return d.Finish(status)
}
