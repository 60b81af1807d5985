//go:build patchd_cli

// The CLI build (-tags patchd_cli, installed as /usr/bin/patchd). Every
// package a Go binary links runs its init at every start, and the
// daemon's (client_golang registering its collectors, the AWS SDK's
// tables, kardianos/service) cost a command like `patchd version` three
// times what Go itself does. The CLI therefore links none of them: the
// commands that need them are run by the full binary, which replaces this
// process with the same arguments and environment. They are parsed here
// first with the same flags and help, so a wrong command line fails the
// same way in both, without the second start.

package main

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"syscall"

	"github.com/patchd/patchd/agent/config"
)

// daemonPath is where the packages install the full binary; the Makefile
// sets it with -ldflags "-X main.daemonPath=...".
var daemonPath = "/usr/libexec/patchd/patchd-daemon"

// daemonName is the full binary's name beside the CLI in a build tree.
const daemonName = "patchd-daemon"

// The actions the full binary runs.
func runDaemonCommand(*config.Flags) int                              { return execDaemon() }
func runCheck(*config.Flags) int                                      { return execDaemon() }
func serviceAction(string, *config.Flags) int                         { return execDaemon() }
func runAgentStatus(*config.Flags, string, io.Writer, io.Writer) int  { return execDaemon() }
func runAgentRestart(*config.Flags, string, io.Writer, io.Writer) int { return execDaemon() }
func classifyAgentLog(string) int                                     { return execDaemon() }

// execDaemon replaces this process with the full binary, same argv and
// environment; it returns only when that fails.
func execDaemon() int {
	path, err := findDaemon()
	if err == nil {
		err = syscall.Exec(path, os.Args, os.Environ())
		err = fmt.Errorf("cannot run %s: %w; install the patchd package again", path, err)
	}
	fmt.Fprintf(os.Stderr, "patchd: %v\n", err)
	return exitFailure
}

// findDaemon returns the full binary: patchd-daemon beside this one first,
// so that a build tree or a test runs its own and never an installed
// one of another version, then daemonPath, where the packages put it.
func findDaemon() (string, error) {
	var tried []string
	if exe, err := os.Executable(); err == nil {
		beside := filepath.Join(filepath.Dir(exe), daemonName)
		if isFile(beside) {
			return beside, nil
		}
		tried = append(tried, beside)
	}
	if isFile(daemonPath) {
		return daemonPath, nil
	}
	tried = append(tried, daemonPath)
	if len(tried) == 1 {
		return "", fmt.Errorf("this command is run by the full patchd binary, and %s does not exist; install the patchd package again", tried[0])
	}
	return "", fmt.Errorf("this command is run by the full patchd binary, and neither %s nor %s exists; install the patchd package again", tried[1], tried[0])
}

// isFile reports whether path is a regular file (following symlinks); any
// other problem (permissions) is left for exec to report.
func isFile(path string) bool {
	fi, err := os.Stat(path)
	if errors.Is(err, fs.ErrNotExist) {
		return false
	}
	return err != nil || fi.Mode().IsRegular()
}
