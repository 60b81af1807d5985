package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"strconv"
	"syscall"
	"text/tabwriter"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/alecthomas/kingpin/v2"

	"github.com/patchd/patchd/agent/config"
	"github.com/patchd/patchd/hooks"
)

// addHooksCommands registers `patchd hooks list` and `patchd hooks run`.
// Both work without the daemon: they read the hooks tree themselves, so an
// operator can try a hook before the first patch run.
func addHooksCommands(app *kingpin.Application, flags *config.Flags, add func(string, command)) {
	hc := app.Command("hooks", "List or run the hooks in --path.hooks.")

	lc := hc.Command("list", "List every file of each phase as runnable, skipped(reason) or refused(reason).")
	listOut := lc.Flag("output", "Output format: text or json (one object per line).").Default("text").Enum("text", "json")
	add("hooks list", func() int {
		cfg, err := flags.Resolve()
		if err != nil {
			return badConfig(os.Stderr, "hooks list", err)
		}
		return hooksList(os.Stdout, os.Stderr, cfg.Paths.Hooks, *listOut)
	})

	rc := hc.Command("run", "Run the hooks of one phase now (trigger manual); exit 0 only when every hook succeeded.")
	phase := rc.Arg("phase", "pre-patch, pre-reboot or post-patch.").Required().Enum("pre-patch", "pre-reboot", "post-patch")
	dryRun := rc.Flag("dry-run", "Start nothing; report what would run (PATCHD_DRY_RUN=1 semantics).").Bool()
	timeout := rc.Flag("timeout", "Timeout of each hook, over --hooks.timeout and the per-phase timeouts.").Duration()
	runOut := rc.Flag("output", "Output format: text or json (one object per line).").Default("text").Enum("text", "json")
	add("hooks run", func() int {
		cfg, err := flags.Resolve()
		if err != nil {
			return badConfig(os.Stderr, "hooks run", err)
		}
		if *timeout < 0 {
			fmt.Fprintf(os.Stderr, "patchd hooks run: --timeout %s: must be positive\n", *timeout)
			return exitUsage
		}
		logger, _ := newLogger(cfg)
		opts := hookOptions(cfg, logger)
		// Each hook gets its own line on stdout as it ends; the runner's
		// "starting" and "finished" lines are for --log.level=debug.
		opts.ProgressLevel = slog.LevelDebug
		if *timeout > 0 {
			opts.Timeout, opts.PhaseTimeouts = *timeout, nil
		}
		// Ctrl-C or SIGTERM kills the running hook's group, as a timeout would.
		ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
		defer stop()
		return hooksRun(ctx, os.Stdout, os.Stderr, cfg.Paths.Hooks, hooks.Phase(*phase), *dryRun, *runOut, hooks.NewRunner(opts, nil))
	})
}

// hookLine is one hook in JSON output.
type hookLine struct {
	Phase    string  `json:"phase"`
	Hook     string  `json:"hook"`
	Path     string  `json:"path,omitempty"`
	State    string  `json:"state,omitempty"`
	Reason   string  `json:"reason,omitempty"`
	Result   string  `json:"result,omitempty"`
	ExitCode *int    `json:"exit_code,omitempty"`
	Duration float64 `json:"duration_seconds,omitempty"`
	Attempt  int     `json:"attempt,omitempty"`
	Error    string  `json:"error,omitempty"`
	Stdout   string  `json:"stdout_tail,omitempty"`
	Stderr   string  `json:"stderr_tail,omitempty"`
}

func hooksList(stdout, stderr io.Writer, root, format string) int {
	code := exitOK
	tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
	enc := json.NewEncoder(stdout)
	for _, p := range hooks.Phases {
		hs, err := hooks.Discover(root, p)
		if err != nil {
			fmt.Fprintf(stderr, "patchd hooks list: %v\n", err)
			code = exitFailure
			continue
		}
		for _, h := range hs {
			if format == "json" {
				_ = enc.Encode(hookLine{Phase: string(p), Hook: h.Name, Path: h.Path, State: string(h.State), Reason: h.Reason})
				continue
			}
			state := string(h.State)
			if h.Reason != "" {
				state += "(" + printable(h.Reason) + ")"
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\n", p, printable(h.Name), state)
		}
	}
	_ = tw.Flush()
	return code
}

// hooksRun runs one phase and prints each hook as it ends, so a slow phase
// shows progress.
func hooksRun(ctx context.Context, stdout, stderr io.Writer, root string, phase hooks.Phase, dryRun bool, format string, r *hooks.Runner) int {
	show := func(res hooks.Result) {
		if format == "json" {
			code := res.ExitCode
			_ = json.NewEncoder(stdout).Encode(hookLine{Phase: string(res.Phase), Hook: res.Name,
				Result: string(res.Outcome), ExitCode: &code, Duration: res.Duration.Seconds(),
				Attempt: res.Attempt, Error: res.Error, Stdout: res.StdoutTail, Stderr: res.StderrTail})
			return
		}
		line := fmt.Sprintf("%-32s %-9s exit=%-3d %8s", string(res.Phase)+"/"+printable(res.Name), res.Outcome, res.ExitCode, res.Duration.Round(time.Millisecond))
		if res.Error != "" {
			line += "  " + printable(res.Error)
		}
		fmt.Fprintln(stdout, line)
	}
	env := hooks.Env{Phase: phase, Trigger: "manual", DryRun: dryRun}
	results, err := r.RunPhase(ctx, root, env, hooks.PhaseOptions{
		OnResult: func(res hooks.Result) error { show(res); return nil },
	})
	for _, res := range results {
		if res.Outcome == hooks.NotRun {
			show(res)
		}
	}
	if err != nil {
		fmt.Fprintf(stderr, "patchd hooks run %s: %v\n", phase, err)
		return exitFailure
	}
	if !hooks.PhaseSucceeded(results) {
		return exitFailure
	}
	return exitOK
}

// printable returns s as it is when every character prints, else quoted
// in Go syntax: a hook's file name with a newline or a terminal escape in
// it must not forge lines in the listing or drive the terminal.
func printable(s string) string {
	if !utf8.ValidString(s) {
		return strconv.Quote(s)
	}
	for _, r := range s {
		if !unicode.IsPrint(r) {
			return strconv.Quote(s)
		}
	}
	return s
}

// hookOptions translates the configuration's hooks section.
func hookOptions(cfg config.Config, logger *slog.Logger) hooks.Options {
	pt := make(map[hooks.Phase]time.Duration, len(cfg.Hooks.PhaseTimeouts))
	for p, d := range cfg.Hooks.PhaseTimeouts {
		pt[hooks.Phase(p)] = d
	}
	return hooks.Options{
		Timeout:       cfg.Hooks.Timeout,
		PhaseTimeouts: pt,
		KillGrace:     cfg.Hooks.KillGrace,
		Logger:        logger,
	}
}
