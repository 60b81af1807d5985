package main

import (
	"github.com/alecthomas/kingpin/v2"

	"github.com/patchd/patchd/agent/config"
)

func addServiceCommands(app *kingpin.Application, flags *config.Flags, add func(string, command)) {
	svc := app.Command("service", "Manage patchd as a system service on hosts that do not use the packages.")
	for _, action := range []struct{ name, help string }{
		{"install", "Install patchd as a service (refused when the packaged unit exists)."},
		{"uninstall", "Remove the service installed by 'patchd service install'."},
		{"start", "Start the service."},
		{"stop", "Stop the service."},
		{"status", "Print the service's status."},
	} {
		svc.Command(action.name, action.help)
		add("service "+action.name, func() int { return serviceAction(action.name, flags) })
	}
}
