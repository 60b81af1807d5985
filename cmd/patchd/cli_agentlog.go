package main

import (
	"github.com/alecthomas/kingpin/v2"

	"github.com/patchd/patchd/agent/config"
)

// addAgentLogCommands registers `patchd agent-log classify`. It reads no
// configuration: it is the tool users run on a log pasted from another host,
// and a broken patchd.yaml on this one must not stop it.
func addAgentLogCommands(app *kingpin.Application, flags *config.Flags, add func(string, command)) {
	_ = flags
	al := app.Command("agent-log", "Work with amazon-ssm-agent's log.")
	cl := al.Command("classify", "Print <line_number>\\t<level>\\t<event_kind> for every line of an agent log (FILE or - for stdin): the agent's files, journalctl -u amazon-ssm-agent output, syslog or grep output.")
	file := cl.Arg("file", "Log file to classify; - or nothing reads stdin (e.g. journalctl -u amazon-ssm-agent | patchd agent-log classify).").Default("-").String()
	add("agent-log classify", func() int { return classifyAgentLog(*file) })
}
