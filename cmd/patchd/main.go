// Command patchd runs the patch-hook daemon and its CLI.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"

	"github.com/alecthomas/kingpin/v2"
	"github.com/prometheus/common/promslog"
	"github.com/prometheus/common/version"

	"github.com/patchd/patchd/agent/config"
	"github.com/patchd/patchd/agent/controlclient"
)

// Exit codes, one rule for every subcommand (docs/cli.md; the SSM document
// in packaging relies on them): 0 fine; 1 what was run or checked failed;
// 2 the command line or the configuration is wrong, so nothing was tried;
// 3 the daemon is not reachable or is stopping (try again once it runs);
// 4 the daemon answered and refused the request; 5 the wait given by
// --timeout ended first (the phase goes on in the daemon).
const (
	exitOK          = 0
	exitFailure     = 1
	exitUsage       = 2
	exitUnreachable = 3
	exitRefused     = 4
	exitTimeout     = 5
)

// badConfig reports an invalid configuration the same way in every
// subcommand.
func badConfig(stderr io.Writer, cmd string, err error) int {
	fmt.Fprintf(stderr, "patchd %s: invalid configuration:\n%v\n", cmd, err)
	return exitUsage
}

// daemonError is the exit code for a failed request to the daemon.
func daemonError(ctx context.Context, err error) int {
	var api *controlclient.APIError
	switch {
	case errors.As(err, &api) && api.Status == controlclient.StatusUnavailable:
		return exitUnreachable
	case errors.As(err, &api):
		return exitRefused
	case ctx.Err() != nil:
		return exitTimeout
	case errors.Is(err, controlclient.ErrUnreachable):
		return exitUnreachable
	}
	return exitFailure
}

// terminated is how kingpin's exit (after --help or --version) unwinds
// to run.
type terminated int

// command is one subcommand's action; it returns the exit code.
type command func() int

func main() {
	os.Exit(run(os.Args[1:]))
}

// run parses args and runs the chosen subcommand. Each area registers its own
// subcommands in its own file (add*Commands) so that they stay small.
//
// This package builds two binaries from the same commands, flags and help
// (docs/design.md, "Two binaries"): the full one (the default build,
// installed as patchd-daemon) and the CLI (-tags patchd_cli, installed as
// patchd), which links none of the daemon's heavy dependencies and has
// the full binary run the commands that need them (delegate.go). A file
// that registers a command is in both builds; an action that needs the
// daemon's packages is in a file built with !patchd_cli (daemon*.go,
// *_full.go).
func run(args []string) (code int) {
	// --help and --version print, then ask kingpin to exit. run must
	// return, not exit, so tests can call it; and kingpin, when its
	// terminate returns, goes on parsing and prints the usage a second
	// time. So terminate unwinds to here, and run answers with its status.
	defer func() {
		if r := recover(); r != nil {
			t, ok := r.(terminated)
			if !ok {
				panic(r)
			}
			code = int(t)
		}
	}()
	app := kingpin.New("patchd", "Runs hooks around every AWS Systems Manager patch run, keeps amazon-ssm-agent healthy, and reports it all as Prometheus metrics.")
	app.HelpFlag.Short('h')
	app.UsageWriter(os.Stdout)
	app.ErrorWriter(os.Stderr)
	app.Terminate(func(code int) { panic(terminated(code)) })
	// What app.Version does, but the text (a template run) is made only
	// when --version is given, not at every start of every command.
	app.VersionFlag = app.Flag("version", "Show application version.").PreAction(func(*kingpin.ParseContext) error {
		fmt.Println(version.Print("patchd"))
		panic(terminated(exitOK))
	})
	app.VersionFlag.Bool()
	flags := config.AddFlags(app)

	cmds := map[string]command{}
	add := func(fullName string, c command) { cmds[fullName] = c }
	addRunCommand(app, flags, add)
	addCheckCommand(app, flags, add)
	addVersionCommand(app, add)
	addServiceCommands(app, flags, add)
	addHooksCommands(app, flags, add)
	addCycleCommands(app, flags, add)
	addAgentLogCommands(app, flags, add)
	addAgentCommands(app, flags, add)

	chosen, err := app.Parse(args)
	if err != nil {
		fmt.Fprintf(os.Stderr, "patchd: %v; see patchd --help\n", err)
		return exitUsage
	}
	c, ok := cmds[chosen]
	if !ok {
		// Only a command of kingpin's own gets here, and those end in
		// terminate; nothing is left to do.
		return exitOK
	}
	return c()
}

func addVersionCommand(app *kingpin.Application, add func(string, command)) {
	app.Command("version", "Print the version and build information.")
	add("version", func() int {
		fmt.Println(version.Print("patchd"))
		return exitOK
	})
}

func addRunCommand(app *kingpin.Application, flags *config.Flags, add func(string, command)) {
	app.Command("run", "Run the daemon in the foreground (what the systemd unit starts).")
	add("run", func() int { return runDaemonCommand(flags) })
}

func newLogger(cfg config.Config) (*slog.Logger, *promslog.Level) {
	level := promslog.NewLevel()
	_ = level.Set(cfg.Log.Level)
	format := promslog.NewFormat()
	_ = format.Set(cfg.Log.Format)
	return promslog.New(&promslog.Config{Level: level, Format: format}), level
}
