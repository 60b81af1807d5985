package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/alecthomas/kingpin/v2"

	"github.com/patchd/patchd/agent/config"
	"github.com/patchd/patchd/agent/controlclient"
	"github.com/patchd/patchd/agent/cycle/cyclestate"
	"github.com/patchd/patchd/agent/ledger"
	"github.com/patchd/patchd/agent/uploads/uploadstatus"
)

// addCycleCommands registers gate, status and history.
func addCycleCommands(app *kingpin.Application, flags *config.Flags, add func(string, command)) {
	gate := app.Command("gate", "Run a cycle phase from a patch document's step and wait for it (exit 0: hooks succeeded, 1: a hook failed, 2: bad command line or configuration, 3: patchd not running or stopping, 4: patchd refused the request, 5: --timeout reached).")
	var (
		docID   string
		wait    bool
		result  string
		timeout time.Duration
	)
	pre := gate.Command("pre-patch", "Open a cycle (or join the open one) and wait for its pre-patch hooks.")
	pre.Flag("document-id", "The SSM document running this gate (default: found from the ssm-document-worker this runs under).").StringVar(&docID)
	pre.Flag("wait-for-patch", "The patch runs as a later, separate command: the end of this gate's document does not end the cycle.").BoolVar(&wait)
	pre.Flag("timeout", "Longest wait for the phase.").Default("2h").DurationVar(&timeout)
	post := gate.Command("post-patch", "Close the open cycle now and wait for its post-patch hooks.")
	post.Flag("result", "The patch run's result given to the hooks: success, failed, cancelled, timed_out, unknown (default: from the document's status).").
		EnumVar(&result, cyclestate.Results...)
	post.Flag("timeout", "Longest wait for the phase.").Default("2h").DurationVar(&timeout)
	for _, name := range []string{"pre-patch", "post-patch"} {
		add("gate "+name, func() int {
			req := cyclestate.GateRequest{Phase: name, DocumentID: docID, WaitForPatch: wait, Result: result,
				Region: firstEnv("AWS_SSM_REGION_NAME", "AWS_REGION")}
			if req.DocumentID == "" && name == "pre-patch" {
				req.DocumentID = documentWorkerID(os.Getpid())
			}
			return runGate(flags, req, timeout, os.Stdout, os.Stderr)
		})
	}

	var output string
	status := app.Command("status", "Show the open patch cycle, the last finished one, and the agent folders watched.")
	status.Flag("output", "Output format: text or json.").Short('o').Default("text").EnumVar(&output, "text", "json")
	add("status", func() int { return runStatus(flags, output, os.Stdout, os.Stderr) })

	var n int
	history := app.Command("history", "Show finished patch cycles from the ledger: what was patched, and when.")
	history.Flag("n", "Show the last N cycles (0: all).").Short('n').Default("20").IntVar(&n)
	history.Flag("output", "Output format: text or json (one entry per line, as in ledger.jsonl).").Short('o').Default("text").EnumVar(&output, "text", "json")
	add("history", func() int { return runHistory(flags, n, output, os.Stdout, os.Stderr) })
}

func firstEnv(names ...string) string {
	for _, n := range names {
		if v := os.Getenv(n); v != "" {
			return v
		}
	}
	return ""
}

// documentWorkerID walks up the process tree to the agent's
// `ssm-document-worker <DocumentID>` (docs/agent-formats.md, "Service and
// processes"), which runs every step of a document.
func documentWorkerID(pid int) string {
	for range 32 {
		stat, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(pid), "stat"))
		if err != nil {
			return ""
		}
		// The ppid is the second field after the parenthesised comm, which
		// may itself contain spaces and parentheses.
		i := strings.LastIndexByte(string(stat), ')')
		if i < 0 {
			return ""
		}
		f := strings.Fields(string(stat[i+1:]))
		if len(f) < 2 {
			return ""
		}
		ppid, err := strconv.Atoi(f[1])
		if err != nil || ppid <= 1 {
			return ""
		}
		pid = ppid
		cmdline, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(pid), "cmdline"))
		if err != nil {
			return ""
		}
		args := strings.Split(strings.TrimRight(string(cmdline), "\x00"), "\x00")
		// The worker's own name is argv[0]; argv[1] when an interpreter
		// runs it (a wrapper script in its place).
		for i := 0; i < 2 && i+1 < len(args); i++ {
			if filepath.Base(args[i]) == "ssm-document-worker" {
				return args[i+1]
			}
		}
	}
	return ""
}

func runGate(flags *config.Flags, req cyclestate.GateRequest, timeout time.Duration, stdout, stderr io.Writer) int {
	cfg, err := flags.Resolve()
	if err != nil {
		return badConfig(stderr, "gate "+req.Phase, err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	var rep cyclestate.GateReply
	if err := controlclient.New(cfg.Control.Socket, timeout).Do(ctx, "POST", "/v1/gate", req, &rep); err != nil {
		code := daemonError(ctx, err)
		if code == exitTimeout {
			fmt.Fprintf(stderr, "patchd gate %s: no answer within --timeout %s; the phase goes on in patchd (see patchd status)\n", req.Phase, timeout)
		} else {
			fmt.Fprintf(stderr, "patchd gate %s: %v\n", req.Phase, err)
		}
		return code
	}
	for _, h := range rep.Hooks {
		fmt.Fprintf(stdout, "%s/%s: %s (exit %d, attempt %d)\n", h.Phase, h.Name, h.Outcome, h.ExitCode, h.Attempt)
	}
	if rep.Message != "" {
		fmt.Fprintf(stdout, "%s\n", rep.Message)
	}
	if !rep.OK {
		if req.Phase == cyclestate.PhasePostPatch {
			fmt.Fprintf(stderr, "patchd gate %s: cycle %s: a post-patch hook failed: this host is not back to normal (see patchd status, journalctl -u patchd)\n", req.Phase, rep.CycleID)
		} else {
			fmt.Fprintf(stderr, "patchd gate %s: cycle %s: the phase failed; do not patch until it is fixed (see journalctl -u patchd)\n", req.Phase, rep.CycleID)
		}
		return exitFailure
	}
	fmt.Fprintf(stdout, "cycle %s: %s done\n", rep.CycleID, req.Phase)
	return exitOK
}

func runStatus(flags *config.Flags, output string, stdout, stderr io.Writer) int {
	cfg, err := flags.Resolve()
	if err != nil {
		return badConfig(stderr, "status", err)
	}
	var st statusReply
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	err = controlclient.New(cfg.Control.Socket, 10*time.Second).Do(ctx, "GET", "/v1/status", nil, &st)
	if err != nil {
		if !errors.Is(err, controlclient.ErrUnreachable) {
			fmt.Fprintf(stderr, "patchd status: %v\n", err)
			return daemonError(ctx, err)
		}
		// The daemon is down: what it last wrote is still the truth about
		// the cycle, and it resumes from exactly that.
		fs, ferr := cyclestate.StatusFromFile(cfg.Paths.State)
		if ferr != nil {
			fmt.Fprintf(stderr, "patchd status: %v; and %v\n", err, ferr)
			return exitFailure
		}
		st = statusReply{Status: fs, Watched: watchedFolders(cfg.Paths.AgentData), FromFile: filepath.Join(cfg.Paths.State, cyclestate.FileName)}
		fmt.Fprintf(stderr, "patchd daemon not reachable at %s; showing the state file %s\n", cfg.Control.Socket, st.FromFile)
	}
	if output == "json" {
		return writeJSON(stdout, st)
	}
	printStatus(stdout, st)
	return exitOK
}

func printStatus(w io.Writer, st statusReply) {
	if c := st.Current; c != nil {
		fmt.Fprintf(w, "Open cycle %s (trigger %s, opened %s)\n", c.ID, c.Trigger, c.Opened.Local().Format(time.RFC3339))
		doc := c.Document.DocumentID
		if doc == "" {
			doc = "(none yet)"
		}
		fmt.Fprintf(w, "  document:   %s %s\n  command id: %s\n  operation:  %s\n  phase:      %s\n",
			doc, c.Document.DocumentName, c.Document.CommandID, c.Document.Operation, c.Phase)
		if st.Running != "" {
			fmt.Fprintf(w, "  running:    %s\n", st.Running)
		}
		if c.RebootRequested {
			fmt.Fprintf(w, "  reboot:     requested\n")
		}
		tw := tabwriter.NewWriter(w, 2, 4, 2, ' ', 0)
		for _, p := range config.Phases {
			ps := c.Phases[p]
			if ps == nil {
				continue
			}
			for _, h := range ps.Hooks {
				fmt.Fprintf(tw, "  %s/%s\t%s\texit %d\tattempt %d\n", p, h.Name, h.Outcome, h.ExitCode, h.Attempt)
			}
		}
		tw.Flush()
		for _, q := range st.Queue {
			fmt.Fprintf(w, "  queued:     %s %s\n", q.DocumentID, q.DocumentName)
		}
	} else {
		fmt.Fprintln(w, "No open cycle.")
	}
	if l := st.Last; l != nil {
		fmt.Fprintf(w, "Last cycle %s: %s, trigger %s, document %s %s, closed %s, rebooted %v\n", l.CycleID, l.Result, l.Trigger,
			l.DocumentID, l.DocumentName, l.Closed.Local().Format(time.RFC3339), l.Rebooted)
		if l.ResultReason != "" {
			fmt.Fprintf(w, "  result %s: %s\n", l.Result, l.ResultReason)
		}
	}
	fmt.Fprintf(w, "Watched agent folders: %s\n", strings.Join(st.Watched, ", "))
	printSSMReports(w, st.SSMReports)
}

// printSSMReports says when each kind last reached Systems Manager and,
// when its last try failed, why.
func printSSMReports(w io.Writer, rs []uploadstatus.Status) {
	if len(rs) == 0 {
		return
	}
	fmt.Fprintln(w, "Systems Manager:")
	when := func(t time.Time) string {
		if t.IsZero() {
			return "never"
		}
		return t.Local().Format(time.RFC3339)
	}
	for _, r := range rs {
		verb := "sent"
		if r.Kind == uploadstatus.KindInventory {
			verb = "written"
		}
		line := fmt.Sprintf("  %-11s  last %s %s", r.Kind, verb, when(r.LastSuccess))
		switch {
		case r.Off != "":
			line = fmt.Sprintf("  %-11s  off (%s)", r.Kind, r.Off)
		case r.Kind == uploadstatus.KindCompliance && r.Pending > 0:
			line += fmt.Sprintf("; %d waiting", r.Pending)
		}
		if r.Reason != "" && r.Off == "" {
			line += fmt.Sprintf("; failed %s (%s): %s", when(r.LastFailure), r.Reason, r.Error)
		}
		fmt.Fprintln(w, line)
	}
}

func runHistory(flags *config.Flags, n int, output string, stdout, stderr io.Writer) int {
	cfg, err := flags.Resolve()
	if err != nil {
		return badConfig(stderr, "history", err)
	}
	path := filepath.Join(cfg.Paths.State, ledger.FileName)
	entries, bad, err := ledger.Read(path, n)
	if err != nil {
		fmt.Fprintf(stderr, "patchd history: %v\n", err)
		return exitFailure
	}
	if bad > 0 {
		fmt.Fprintf(stderr, "patchd history: %d unreadable lines in %s skipped\n", bad, path)
	}
	if output == "json" {
		enc := json.NewEncoder(stdout)
		for _, e := range entries {
			_ = enc.Encode(e)
		}
		return exitOK
	}
	if len(entries) == 0 {
		fmt.Fprintf(stdout, "No finished patch cycles in %s.\n", path)
		return exitOK
	}
	tw := tabwriter.NewWriter(stdout, 2, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "CLOSED\tRESULT\tTRIGGER\tDOCUMENT\tCOMMAND ID\tREBOOT\tINSTALLED\tUPGRADED\tREMOVED\tHOOKS FAILED")
	for _, e := range entries {
		failed := 0
		for _, h := range e.Hooks {
			if h.Outcome != "success" {
				failed++
			}
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%v\t%d\t%d\t%d\t%d\n", e.Closed.Local().Format(time.RFC3339), e.Result, e.Trigger,
			orDash(e.DocumentName), orDash(e.CommandID), e.Rebooted, len(e.Packages.Installed), len(e.Packages.Upgraded), len(e.Packages.Removed), failed)
	}
	tw.Flush()
	// Why a result is unknown does not fit a column: one line per cycle.
	for _, e := range entries {
		if e.ResultReason != "" {
			fmt.Fprintf(stdout, "%s %s: %s\n", e.Closed.Local().Format(time.RFC3339), e.Result, e.ResultReason)
		}
	}
	return exitOK
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

// statusReply is GET /v1/status.
type statusReply struct {
	cyclestate.Status
	// Watched are the agent's instance folders whose state is followed.
	Watched []string `json:"watched"`
	// FromFile is set by the CLI when the daemon was not reachable.
	FromFile string `json:"from_file,omitempty"`
	// SSMReports are the last deliveries to Systems Manager, by kind
	// (docs/fleet-ssm.md); known only to a running daemon.
	SSMReports []uploadstatus.Status `json:"ssm_reports,omitempty"`
}

// watchedFolders lists <agent-data>/<instance-id> folders that have a
// document state tree: the ones the command watcher follows.
func watchedFolders(agentData string) []string {
	m, _ := filepath.Glob(filepath.Join(agentData, "*", "document", "state"))
	out := make([]string, 0, len(m))
	for _, p := range m {
		out = append(out, filepath.Dir(filepath.Dir(p)))
	}
	return out
}

// writeJSON prints v as indented JSON, the -o json of status commands.
func writeJSON(w io.Writer, v any) int {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	_ = enc.Encode(v)
	return exitOK
}
