package main

import (
	"github.com/alecthomas/kingpin/v2"

	"github.com/patchd/patchd/agent/config"
)

func addCheckCommand(app *kingpin.Application, flags *config.Flags, add func(string, command)) {
	app.Command("check", "Validate the configuration file and the hooks directory; exit 0 when both are fine, 2 when the configuration is invalid, 1 when only the hooks have problems.")
	add("check", func() int { return runCheck(flags) })
}
