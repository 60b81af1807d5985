//go:build !patchd_cli

package main

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/kardianos/service"

	"github.com/patchd/patchd/agent/config"
	"github.com/patchd/patchd/systemd"
)

// packagedUnit is where the deb and rpm put the unit. `patchd service
// install` must not write a second unit that would shadow it.
var packagedUnit = "/usr/lib/systemd/system/patchd.service"

// noopProgram satisfies service.Interface: the service commands only manage
// the installed service; the daemon itself is `patchd run`.
type noopProgram struct{}

func (noopProgram) Start(service.Service) error { return nil }
func (noopProgram) Stop(service.Service) error  { return nil }

func serviceConfig(flags *config.Flags) (*service.Config, error) {
	exe, err := os.Executable()
	if err != nil {
		return nil, err
	}
	exe, _ = filepath.EvalSymlinks(exe)
	args := []string{"run", "--config.file", flags.File}
	script, err := unitScript(systemd.Unit, exe, args)
	if err != nil {
		return nil, err
	}
	return &service.Config{
		Name:        "patchd",
		DisplayName: "patchd",
		Description: "Runs hooks around AWS Systems Manager patch runs and keeps amazon-ssm-agent healthy.",
		Executable:  exe,
		Arguments:   args,
		Dependencies: []string{
			"After=network-online.target",
			"Wants=network-online.target",
		},
		// The packaged unit, not kardianos's default: that one has no
		// KillMode=mixed (systemd would kill the hooks patchd runs at
		// shutdown), no TimeoutStopSec and no ExecReload.
		Option: service.KeyValue{"SystemdScript": script, "Restart": "on-failure"},
	}, nil
}

// unitScript is the packaged unit with ExecStart pointing at exe and args.
// Values are written in literally, escaped for systemd, so the script has no
// template actions and kardianos renders it unchanged; a value that would
// read as one is refused.
func unitScript(unit, exe string, args []string) (string, error) {
	line := "ExecStart=" + systemdEscape(exe, false)
	for _, a := range args {
		line += " " + systemdEscape(a, true)
	}
	if strings.Contains(line, "{{") || strings.Contains(line, "}}") {
		return "", fmt.Errorf("cannot write a unit for %q: the path contains \"{{\" or \"}}\"; move the binary or the configuration file", line)
	}
	lines := strings.Split(unit, "\n")
	found := false
	for i, l := range lines {
		if strings.HasPrefix(l, "ExecStart=") {
			lines[i], found = line, true
		}
	}
	if !found {
		return "", errors.New("the packaged unit has no ExecStart= line")
	}
	return strings.Join(lines, "\n"), nil
}

// systemdEscape writes s for an ExecStart= line: specifiers (%) and
// variable references ($) literal, an argument quoted, the path's blanks
// escaped (systemd does not take a quoted executable path on older
// versions).
func systemdEscape(s string, quote bool) string {
	s = strings.ReplaceAll(s, "%", "%%")
	s = strings.ReplaceAll(s, "$", "$$")
	if !quote {
		return strings.ReplaceAll(s, " ", `\x20`)
	}
	s = strings.ReplaceAll(s, `\`, `\\`)
	return `"` + strings.ReplaceAll(s, `"`, `\"`) + `"`
}

func serviceAction(action string, flags *config.Flags) int {
	if action == "install" {
		if _, err := os.Stat(packagedUnit); err == nil {
			fmt.Fprintf(os.Stderr, "patchd service install: %s exists (installed by the patchd package); use systemctl enable --now patchd instead of a second unit that would shadow it\n", packagedUnit)
			return exitFailure
		}
	}
	cfg, err := serviceConfig(flags)
	if err != nil {
		fmt.Fprintf(os.Stderr, "patchd service %s: %v\n", action, err)
		return exitFailure
	}
	s, err := service.New(noopProgram{}, cfg)
	if err != nil {
		fmt.Fprintf(os.Stderr, "patchd service %s: %v\n", action, err)
		return exitFailure
	}
	if action == "status" {
		st, err := s.Status()
		if err != nil {
			if errors.Is(err, service.ErrNotInstalled) {
				fmt.Println("patchd service: not installed")
				return exitFailure
			}
			fmt.Fprintf(os.Stderr, "patchd service status: %v\n", err)
			return exitFailure
		}
		names := map[service.Status]string{service.StatusRunning: "running", service.StatusStopped: "stopped", service.StatusUnknown: "unknown"}
		fmt.Printf("patchd service (%s): %s\n", s.Platform(), names[st])
		if st != service.StatusRunning {
			return exitFailure
		}
		return exitOK
	}
	if err := service.Control(s, action); err != nil {
		fmt.Fprintf(os.Stderr, "patchd service %s: %v\n", action, err)
		return exitFailure
	}
	fmt.Printf("patchd service %s: done (%s)\n", action, s.Platform())
	return exitOK
}
