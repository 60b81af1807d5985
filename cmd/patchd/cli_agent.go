package main

import (
	"github.com/alecthomas/kingpin/v2"

	"github.com/patchd/patchd/agent/config"
)

// addAgentCommands registers the agent subcommands (not built yet).
func addAgentCommands(app *kingpin.Application, flags *config.Flags, add func(string, command)) {
	_, _, _ = app, flags, add
}
