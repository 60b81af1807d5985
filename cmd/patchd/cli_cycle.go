package main

import (
	"github.com/alecthomas/kingpin/v2"

	"github.com/patchd/patchd/agent/config"
)

// addCycleCommands registers the cycle subcommands (not built yet).
func addCycleCommands(app *kingpin.Application, flags *config.Flags, add func(string, command)) {
	_, _, _ = app, flags, add
}
