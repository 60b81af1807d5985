package main

import (
	"github.com/alecthomas/kingpin/v2"

	"github.com/patchd/patchd/agent/config"
)

// addAgentLogCommands registers the agentlog subcommands (not built yet).
func addAgentLogCommands(app *kingpin.Application, flags *config.Flags, add func(string, command)) {
	_, _, _ = app, flags, add
}
