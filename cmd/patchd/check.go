package main

import (
	"errors"
	"fmt"
	"os"

	"github.com/alecthomas/kingpin/v2"

	"github.com/patchd/patchd/agent/config"
)

func addCheckCommand(app *kingpin.Application, flags *config.Flags, add func(string, command)) {
	app.Command("check", "Validate the configuration file and the hooks directory; exit 0 when both are fine, 2 when the configuration is invalid, 1 when only the hooks have problems.")
	add("check", func() int {
		problems := 0
		report := func(msg string) {
			problems++
			fmt.Fprintln(os.Stderr, msg)
		}
		cfg, err := flags.Resolve()
		badConfig := err != nil
		if err != nil {
			var ps config.Problems
			if errors.As(err, &ps) {
				for _, p := range ps {
					report(p.Error())
				}
			} else {
				report(err.Error())
			}
			// Without a valid configuration the hooks path may be wrong
			// too; still check the one we have so every problem shows.
		}
		for _, msg := range checkHooksDir(cfg) {
			report(msg)
		}
		if problems > 0 {
			fmt.Fprintf(os.Stderr, "patchd check: %d problem(s)\n", problems)
			if badConfig {
				return exitUsage // the one rule: a bad configuration is 2
			}
			return exitFailure
		}
		fmt.Printf("patchd check: configuration %s and hooks %s are fine\n", flags.File, cfg.Paths.Hooks)
		return exitOK
	})
}
