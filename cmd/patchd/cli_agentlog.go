package main

import (
	"fmt"
	"io"
	"os"

	"github.com/alecthomas/kingpin/v2"

	"github.com/patchd/patchd/agent/agentlog"
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
	add("agent-log classify", func() int {
		var r io.Reader = os.Stdin
		name := "stdin"
		if *file != "-" && *file != "" {
			f, err := os.Open(*file)
			if err != nil {
				fmt.Fprintf(os.Stderr, "patchd agent-log classify: %v (give a readable file, or - for stdin)\n", err)
				return exitFailure
			}
			defer f.Close()
			r, name = f, *file
		}
		if err := agentlog.ClassifyStream(r, os.Stdout); err != nil {
			fmt.Fprintf(os.Stderr, "patchd agent-log classify: %s: %v\n", name, err)
			return exitFailure
		}
		return exitOK
	})
}
