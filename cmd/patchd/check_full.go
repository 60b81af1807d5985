//go:build !patchd_cli

package main

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/prometheus/exporter-toolkit/web"

	"github.com/patchd/patchd/agent/config"
	"github.com/patchd/patchd/agent/safeopen"
	"github.com/patchd/patchd/hooks"
)

// runCheck is `patchd check`.
func runCheck(flags *config.Flags) int {
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

// checkHooksDir returns one message per problem in the hooks tree, for
// `patchd check`: a missing or unreadable tree, a directory that is not a
// phase, and every refused hook, each with the path and the fix.
func checkHooksDir(cfg config.Config) []string {
	root := cfg.Paths.Hooks
	fi, err := os.Stat(root)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return []string{fmt.Sprintf("hooks directory %s does not exist: create it with mkdir -p %s/pre-patch %s/pre-reboot %s/post-patch (owned by root, mode 0755), or set paths.hooks", root, root, root, root)}
	case err != nil:
		return []string{fmt.Sprintf("hooks directory %s: %v", root, err)}
	case !fi.IsDir():
		return []string{fmt.Sprintf("hooks directory %s is not a directory: remove it and create the directory, or set paths.hooks", root)}
	}
	var msgs []string
	entries, err := os.ReadDir(root)
	if err != nil {
		return []string{fmt.Sprintf("hooks directory %s: %v (patchd must be able to read it)", root, err)}
	}
	for _, e := range entries {
		if slices.Contains(config.Phases, e.Name()) || strings.HasPrefix(e.Name(), ".") {
			continue
		}
		p := filepath.Join(root, e.Name())
		if e.IsDir() {
			msgs = append(msgs, fmt.Sprintf("%s: not a phase directory, its hooks never run: move them into pre-patch, pre-reboot or post-patch", printable(p)))
		} else if info, err := e.Info(); err == nil && info.Mode().IsRegular() && info.Mode().Perm()&0o111 != 0 {
			msgs = append(msgs, fmt.Sprintf("%s: hooks belong in a phase directory (pre-patch, pre-reboot or post-patch), not in %s itself", printable(p), root))
		}
	}
	for _, p := range hooks.Phases {
		// An unsafe directory on the way to a phase is reported even
		// when the phase has no hooks yet: whoever can write it decides
		// what runs next. Its hooks are then all refused for the same
		// reason, said once.
		if r := hooks.CheckPhaseDir(root, p); r != "" {
			msgs = append(msgs, fmt.Sprintf("hooks of phase %s will not run: %s", p, r))
			continue
		}
		hs, err := hooks.Discover(root, p)
		if err != nil {
			msgs = append(msgs, err.Error())
			continue
		}
		for _, h := range hs {
			if h.State == hooks.Refused {
				msgs = append(msgs, fmt.Sprintf("hook %s refused, it will not run: %s", printable(h.Path), printable(h.Reason)))
			}
		}
	}
	return msgs
}
