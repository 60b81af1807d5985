package main

import (
	"github.com/alecthomas/kingpin/v2"

	"github.com/patchd/patchd/agent/config"
)

// addHooksCommands registers the hooks subcommands (not built yet).
func addHooksCommands(app *kingpin.Application, flags *config.Flags, add func(string, command)) {
	_, _, _ = app, flags, add
}

// checkHooksDir returns one message per problem in the hooks tree, for
// `patchd check`.
func checkHooksDir(cfg config.Config) []string {
	_ = cfg
	return nil
}
