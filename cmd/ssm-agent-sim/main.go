// Command ssm-agent-sim plays amazon-ssm-agent on disk for demos and system
// tests: each invocation does one thing the agent does (submit a document,
// start it, finish a step, ask for a reboot, resume, finish, corrupt, write
// a log line), in the agent's formats, so a shell script can drive patchd
// through a whole patch run. See package agent/ssm/ssmsim.
package main

import (
	"fmt"
	"os"
	"time"

	"github.com/alecthomas/kingpin/v2"

	"github.com/patchd/patchd/agent/ssm"
	"github.com/patchd/patchd/agent/ssm/ssmsim"
)

func main() {
	os.Exit(run(os.Args[1:]))
}

func run(args []string) int {
	app := kingpin.New("ssm-agent-sim", "Simulate amazon-ssm-agent's document state files and log.")
	root := app.Flag("root", "Agent data directory.").Default("/var/lib/amazon/ssm").String()
	instance := app.Flag("instance-id", "Instance id folder (i-… or mi-…).").Default("i-0123456789abcdef0").String()
	logDir := app.Flag("log-dir", "Agent log directory (empty: write no log lines).").Default("").String()
	logMax := app.Flag("log-max-size", "Roll amazon-ssm-agent.log before it passes this many bytes (0: never).").Default("0").Int64()
	endOnly := app.Flag("save-at-end-only", "Write the state file only where the agent's default executer does (start, reboot request, end); step starts and ends are not written.").Bool()
	cleanup := app.Flag("orchestration-cleanup", "The agent's Ssm.OrchestrationDirectoryCleanup: empty keeps orchestration folders, clean-success or clean-success-failed deletes them at the end of a run with that status and logs the status.").Default("").Enum("", "clean-success", "clean-success-failed")

	initCmd := app.Command("init", "Create the state folders as the agent does at start-up.")

	submit := app.Command("submit", "Write a new document to pending/ and print its document id.")
	tmpl := submit.Flag("template", "Document template.").Default("run-patch-baseline").Enum(ssmsim.Templates...)
	op := submit.Flag("operation", "AWS-RunPatchBaseline Operation.").Default("Install").Enum("Install", "Scan")
	reboot := submit.Flag("reboot-option", "AWS-RunPatchBaseline RebootOption.").Default("RebootIfNeeded").Enum("RebootIfNeeded", "NoReboot")
	check := submit.Flag("check", "AWS-ApplyAnsiblePlaybooks Check.").Default("False").Enum("True", "False")
	assoc := submit.Flag("association-id", "Association id (association template; made up when empty).").String()
	cmdID := submit.Flag("command-id", "Command id (made up when empty).").String()
	docName := submit.Flag("document-name", "Override the document name (e.g. a custom patch document).").String()

	start := app.Command("start", "Move a document from pending/ to current/ and record its worker process.")
	startID := start.Arg("id", "Document id.").Required().String()

	stepCmd := app.Command("step", "Set a step's status: InProgress starts it, anything else ends it.")
	stepID := stepCmd.Arg("id", "Document id.").Required().String()
	stepStatus := stepCmd.Arg("status", "Result status (InProgress, Success, Failed, SuccessAndReboot, ...).").Required().String()
	stepName := stepCmd.Flag("step", "Step name (default: the first step not finished).").String()
	stepCode := stepCmd.Flag("code", "Exit code of the step.").Default("0").Int()

	rebootCmd := app.Command("reboot", "End the running step with exit 194: SuccessAndReboot, file stays in current/.")
	rebootID := rebootCmd.Arg("id", "Document id.").Required().String()

	resume := app.Command("resume", "Agent start after the reboot: RunCount+1 and the rebooting step runs again.")
	resumeID := resume.Arg("id", "Document id.").Required().String()

	finish := app.Command("finish", "Write the final status and delete the state file from current/.")
	finishID := finish.Arg("id", "Document id.").Required().String()
	finishStatus := finish.Flag("status", "Final document status.").Default("Success").String()

	corrupt := app.Command("corrupt", "Move the state file to corrupt/.")
	corruptID := corrupt.Arg("id", "Document id.").Required().String()

	rewrite := app.Command("rewrite", "Write the state file again without a change (as the agent often does).")
	rewriteID := rewrite.Arg("id", "Document id.").Required().String()
	partial := rewrite.Flag("bytes", "Write only the first N bytes (a half-written file); 0 writes all.").Default("0").Int()
	completeAfter := rewrite.Flag("complete-after", "With --bytes: write the whole file after this pause (0: leave it half written, as after a crash).").Default("0s").Duration()

	runCmd := app.Command("run", "Submit and play a whole run with a pause between the agent's writes.")
	runTmpl := runCmd.Flag("template", "Document template.").Default("run-patch-baseline").Enum(ssmsim.Templates...)
	runOp := runCmd.Flag("operation", "AWS-RunPatchBaseline Operation.").Default("Install").Enum("Install", "Scan")
	runCheck := runCmd.Flag("check", "AWS-ApplyAnsiblePlaybooks Check.").Default("False").Enum("True", "False")
	runStatus := runCmd.Flag("status", "Final status.").Default("Success").String()
	runReboot := runCmd.Flag("reboot", "Stop at SuccessAndReboot (run resume and finish after the reboot).").Bool()
	runPause := runCmd.Flag("pause", "Pause between writes.").Default("200ms").Duration()

	logCmd := app.Command("log", "Append one line to amazon-ssm-agent.log (and errors.log for ERROR).")
	logLevel := logCmd.Arg("level", "Level.").Required().Enum("TRACE", "DEBUG", "INFO", "WARN", "ERROR", "CRITICAL")
	logMsg := logCmd.Arg("message", "Message.").Required().String()
	logTags := logCmd.Flag("tags", "Context tags.").Default("[amazon-ssm-agent]").String()
	rotate := app.Command("rotate-log", "Roll amazon-ssm-agent.log now (rename to .N; re-created by the next line).")

	cmd, err := app.Parse(args)
	if err != nil {
		fmt.Fprintf(os.Stderr, "ssm-agent-sim: %v\n", err)
		return 2
	}
	a := ssmsim.New(*root, *instance, *logDir)
	a.SaveAtEndOnly = *endOnly
	a.OrchestrationCleanup = *cleanup
	if a.Log != nil {
		a.Log.MaxSize = *logMax
	}
	open := func(id string) *ssmsim.Doc {
		d, err := a.Open(id)
		if err != nil {
			fail(err)
		}
		return d
	}
	switch cmd {
	case initCmd.FullCommand():
		check1(a.Init())
	case submit.FullCommand():
		check1(a.Init())
		spec, err := ssmsim.Template(*tmpl, *op, *reboot, *assoc, *check == "True")
		check1(err)
		if *cmdID != "" {
			spec.CommandID = *cmdID
		}
		if *docName != "" {
			spec.DocumentName = *docName
		}
		d, err := a.Submit(spec)
		check1(err)
		fmt.Println(d.ID())
	case start.FullCommand():
		check1(open(*startID).Start())
	case stepCmd.FullCommand():
		d := open(*stepID)
		if *stepStatus == ssm.StatusInProgress {
			check1(d.RunStep(*stepName))
		} else {
			check1(d.FinishStep(*stepName, *stepStatus, *stepCode, ""))
		}
	case rebootCmd.FullCommand():
		check1(open(*rebootID).RequestReboot(""))
	case resume.FullCommand():
		check1(open(*resumeID).Resume())
	case finish.FullCommand():
		check1(open(*finishID).Finish(*finishStatus))
	case corrupt.FullCommand():
		check1(a.CorruptID(*corruptID))
	case rewrite.FullCommand():
		d := open(*rewriteID)
		if *partial > 0 {
			check1(d.WritePartial(*partial))
			if *completeAfter > 0 {
				time.Sleep(*completeAfter)
				check1(d.Rewrite())
			}
		} else {
			check1(d.Rewrite())
		}
	case runCmd.FullCommand():
		check1(a.Init())
		spec, err := ssmsim.Template(*runTmpl, *runOp, "RebootIfNeeded", "", *runCheck == "True")
		check1(err)
		d, err := a.Submit(spec)
		check1(err)
		fmt.Println(d.ID())
		pause := func() { time.Sleep(*runPause) }
		pause()
		check1(d.Run(*runStatus, *runReboot, pause))
	case logCmd.FullCommand():
		if a.Log == nil {
			fail(fmt.Errorf("--log-dir is required for log lines"))
		}
		check1(a.Log.Line(*logLevel, *logTags, *logMsg))
	case rotate.FullCommand():
		if a.Log == nil {
			fail(fmt.Errorf("--log-dir is required to rotate the log"))
		}
		check1(a.Log.Rotate())
	}
	return 0
}

func check1(err error) {
	if err != nil {
		fail(err)
	}
}

func fail(err error) {
	fmt.Fprintf(os.Stderr, "ssm-agent-sim: %v\n", err)
	os.Exit(1)
}
