package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/signal"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"

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
				state += "(" + h.Reason + ")"
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\n", p, h.Name, state)
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
		line := fmt.Sprintf("%-32s %-9s exit=%-3d %8s", string(res.Phase)+"/"+res.Name, res.Outcome, res.ExitCode, res.Duration.Round(time.Millisecond))
		if res.Error != "" {
			line += "  " + res.Error
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

// checkHooksDir returns one message per problem in the hooks tree, for
// `patchd check`: a missing or unreadable tree, a directory that is not a
// phase, and every refused hook, each with the path and the fix.
func checkHooksDir(cfg config.Config) []string {
	root := cfg.Paths.Hooks
	fi, err := os.Stat(root)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return []string{fmt.Sprintf("hooks directory %s does not exist: create it with mkdir -p %s/pre-patch %s/pre-reboot %s/post-patch (owned by root, mode 0755), or set paths.hooks", root, root, root, root)}
	case err != nil:
		return []string{fmt.Sprintf("hooks directory %s: %v", root, err)}
	case !fi.IsDir():
		return []string{fmt.Sprintf("hooks directory %s is not a directory: remove it and create the directory, or set paths.hooks", root)}
	}
	var msgs []string
	entries, err := os.ReadDir(root)
	if err != nil {
		return []string{fmt.Sprintf("hooks directory %s: %v (patchd must be able to read it)", root, err)}
	}
	for _, e := range entries {
		if slices.Contains(config.Phases, e.Name()) || strings.HasPrefix(e.Name(), ".") {
			continue
		}
		p := filepath.Join(root, e.Name())
		if e.IsDir() {
			msgs = append(msgs, fmt.Sprintf("%s: not a phase directory, its hooks never run: move them into pre-patch, pre-reboot or post-patch", p))
		} else if info, err := e.Info(); err == nil && info.Mode().IsRegular() && info.Mode().Perm()&0o111 != 0 {
			msgs = append(msgs, fmt.Sprintf("%s: hooks belong in a phase directory (pre-patch, pre-reboot or post-patch), not in %s itself", p, root))
		}
	}
	for _, p := range hooks.Phases {
		hs, err := hooks.Discover(root, p)
		if err != nil {
			msgs = append(msgs, err.Error())
			continue
		}
		for _, h := range hs {
			if h.State == hooks.Refused {
				msgs = append(msgs, fmt.Sprintf("hook %s refused, it will not run: %s", h.Path, h.Reason))
			}
		}
	}
	return msgs
}
