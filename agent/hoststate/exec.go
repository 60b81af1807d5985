package hoststate

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// Result is what one query command printed and how it exited.
type Result struct {
	Stdout, Stderr string
	Code           int
}

// Runner runs one query command. A command that could not start, was killed
// or timed out is an error; a non-zero exit is not (dnf check-update exits
// 100 for "updates available").
type Runner interface {
	Run(ctx context.Context, name string, args ...string) (Result, error)
}

// execRunner runs commands found by LookPath with a timeout, in their own
// process group (killed whole at the timeout), at the lowest CPU and I/O
// priority so that an hourly apt/dnf query never competes with the
// workload.
type execRunner struct {
	timeout time.Duration
	// lookPath finds a command; tests point it at fixture scripts.
	lookPath func(string) (string, error)
	// maxOutput bounds stdout and stderr each; zero is maxQueryOutput.
	maxOutput int
}

// maxQueryOutput bounds what a package-manager query may print: a full
// dist-upgrade simulation of a large host prints a few MiB. More is not
// parsed (and not kept in memory).
const maxQueryOutput = 64 << 20

// boundedBuffer keeps up to max bytes and notes whether more came.
type boundedBuffer struct {
	buf  bytes.Buffer
	max  int
	over bool
}

func (b *boundedBuffer) Write(p []byte) (int, error) {
	keep := min(len(p), max(b.max-b.buf.Len(), 0))
	b.buf.Write(p[:keep])
	if keep < len(p) {
		b.over = true
	}
	return len(p), nil
}

// ioprio_set(2) constants (linux/ioprio.h).
const (
	ioprioWhoProcess = 1
	ioprioClassIdle  = 3
	ioprioClassShift = 13
)

func (r execRunner) Run(ctx context.Context, name string, args ...string) (Result, error) {
	path, err := r.lookPath(name)
	if err != nil {
		return Result{Code: -1}, fmt.Errorf("%s not found: %w", name, err)
	}
	ctx, cancel := context.WithTimeout(ctx, r.timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, path, args...)
	// A fixed locale keeps the output the parsers read stable.
	cmd.Env = append(os.Environ(), "LC_ALL=C", "LANG=C")
	cmd.Dir = "/"
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	cmd.WaitDelay = 5 * time.Second
	limit := r.maxOutput
	if limit <= 0 {
		limit = maxQueryOutput
	}
	out, errb := &boundedBuffer{max: limit}, &boundedBuffer{max: limit}
	cmd.Stdout, cmd.Stderr = out, errb
	if err := cmd.Start(); err != nil {
		return Result{Code: -1}, fmt.Errorf("starting %s: %w", path, err)
	}
	// Lowered right after the start: the child's first instants run at
	// patchd's priority, everything it forks later inherits the low one.
	_ = unix.Setpriority(unix.PRIO_PROCESS, cmd.Process.Pid, 19)
	_, _, _ = unix.Syscall(unix.SYS_IOPRIO_SET, ioprioWhoProcess, uintptr(cmd.Process.Pid), ioprioClassIdle<<ioprioClassShift)
	err = cmd.Wait()
	res := Result{Stdout: out.buf.String(), Stderr: errb.buf.String(), Code: -1}
	if out.over || errb.over {
		return res, fmt.Errorf("%s %v: printed more than %d MiB; not parsed", path, args, limit>>20)
	}
	if errors.Is(ctx.Err(), context.DeadlineExceeded) {
		return res, fmt.Errorf("%s %v: no answer within %s (raise host_state.command_timeout if the package manager is slow here)", path, args, r.timeout)
	}
	if ctx.Err() != nil {
		return res, ctx.Err()
	}
	var ee *exec.ExitError
	if errors.As(err, &ee) && ee.Exited() {
		res.Code = ee.ExitCode()
		return res, nil
	}
	if err != nil {
		return res, fmt.Errorf("%s %v: %w", path, args, err)
	}
	res.Code = 0
	return res, nil
}
