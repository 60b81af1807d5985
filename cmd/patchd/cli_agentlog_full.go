//go:build !patchd_cli

package main

import (
	"fmt"
	"io"
	"os"

	"github.com/patchd/patchd/agent/agentlog"
)

// classifyAgentLog is `patchd agent-log classify FILE`.
func classifyAgentLog(file string) int {
	var r io.Reader = os.Stdin
	name := "stdin"
	if file != "-" && file != "" {
		f, err := os.Open(file)
		if err != nil {
			fmt.Fprintf(os.Stderr, "patchd agent-log classify: %v (give a readable file, or - for stdin)\n", err)
			return exitFailure
		}
		defer f.Close()
		r, name = f, file
	}
	if err := agentlog.ClassifyStream(r, os.Stdout); err != nil {
		fmt.Fprintf(os.Stderr, "patchd agent-log classify: %s: %v\n", name, err)
		return exitFailure
	}
	return exitOK
}
