package main

import (
	"os"

	"github.com/alecthomas/kingpin/v2"

	"github.com/patchd/patchd/agent/config"
)

// addAgentCommands registers `patchd agent status` and `patchd agent restart`.
func addAgentCommands(app *kingpin.Application, flags *config.Flags, add func(string, command)) {
	ac := app.Command("agent", "amazon-ssm-agent as the keeper sees it: service, role, restarts.")

	sc := ac.Command("status", "Service manager and state, agent version, instance profile and role, last and pending restart. Works without the daemon (from the state files).")
	var output string
	sc.Flag("output", "Output format: text or json.").Short('o').Default("text").EnumVar(&output, "text", "json")
	add("agent status", func() int { return runAgentStatus(flags, output, os.Stdout, os.Stderr) })

	rc := ac.Command("restart", "Ask the daemon to restart amazon-ssm-agent (reason manual), under the same policy: deferred while a document runs, within agent.max_restarts_per_hour.")
	detail := rc.Flag("detail", "Why, for the log and `patchd agent status`.").Default("").String()
	add("agent restart", func() int { return runAgentRestart(flags, *detail, os.Stdout, os.Stderr) })
}
