package main

import (
	"errors"
	"fmt"
	"os"

	"github.com/alecthomas/kingpin/v2"
	"github.com/prometheus/exporter-toolkit/web"

	"github.com/patchd/patchd/agent/config"
	"github.com/patchd/patchd/agent/safeopen"
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
		// The web configuration is configuration too: a bad one is 2.
		if err := validateWebConfig(cfg.Web.ConfigFile); err != nil {
			badConfig = true
			report(err.Error())
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

// validateWebConfig checks the exporter-toolkit web configuration (TLS,
// basic auth) the way the metrics endpoint will load it, certificates
// included, so that `patchd check` catches what would stop the endpoint.
// The file is first read with safeopen: the toolkit reads it with
// os.ReadFile, which a FIFO would block.
func validateWebConfig(path string) error {
	if path == "" {
		return nil
	}
	if _, err := safeopen.ReadFile(path, config.MaxFileSize); err != nil {
		return fmt.Errorf("web.config_file %s: %w", path, err)
	}
	if err := web.Validate(path); err != nil {
		return fmt.Errorf("web.config_file %s: %w (see the exporter-toolkit web configuration: TLS and basic auth)", path, err)
	}
	return nil
}
