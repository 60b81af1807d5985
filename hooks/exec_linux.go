//go:build linux

package hooks

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// execute starts the hook in its own process group with the contract's
// environment and waits for it, its timeout, or ctx.
//
// The calling goroutine does all of it in one epoll loop over the hook's
// stdout and stderr pipes, a pidfd that becomes readable when the hook
// exits, and an eventfd that ctx's end writes. A goroutine per stream and
// one blocked in wait(2) cost patchd about as much CPU per hook as a
// trivial hook costs itself, and run-parts, which does none of that, is
// what `patchd hooks run` is measured against (BENCHMARKS.md, "Hooks").
//
// The hook's end is its exit, not the pipes' EOF: a background grandchild
// may hold the pipes open long after the hook exited (the naive runner's
// hang), so after the exit the pipes are read for at most DrainTimeout.
func execute(ctx context.Context, h Hook, env Env, opts Options, timeout time.Duration, log *slog.Logger) run {
	rn := run{exitCode: -1}
	l, childFDs, err := newHookLoop(log, opts.MaxLogBytes)
	if err != nil {
		rn.startErr = err
		return rn
	}
	defer l.close()

	start := time.Now()
	pid, err := syscall.ForkExec(h.Target, []string{h.Target}, &syscall.ProcAttr{
		Dir:   "/",
		Env:   env.Environ(),
		Files: childFDs[:],
		Sys:   &syscall.SysProcAttr{Setpgid: true},
	})
	// The child has its own copies; ours must go so that EOF can come.
	for _, fd := range childFDs[1:] {
		_ = unix.Close(int(fd))
	}
	if err != nil {
		rn.startErr = &os.PathError{Op: "fork/exec", Path: h.Target, Err: err}
		return rn
	}
	l.watchExit(pid)
	if started, ok := ctx.Value(startedKey{}).(func(int)); ok {
		started(pid)
	}
	stopWake := context.AfterFunc(ctx, l.wakeUp)
	defer stopWake()

	// An exit seen in the same round as the deadline or the stop wins: a
	// hook that ended just then has finished, and is not killed.
	l.until(func() bool { return l.exited || ctx.Err() != nil }, start.Add(timeout))
	if !l.exited {
		rn.cancelled = ctx.Err() != nil
		rn.timedOut = !rn.cancelled
		log.Warn("stopping hook: SIGTERM to its process group", "timed_out", rn.timedOut, "grace", opts.KillGrace)
		_ = syscall.Kill(-pid, syscall.SIGTERM)
		// Wait for the whole group to let go of the pipes, not just the
		// leader: a grandchild that ignores SIGTERM gets SIGKILL too.
		if !l.until(func() bool { return l.exited && l.drained() }, time.Now().Add(opts.KillGrace)) {
			log.Warn("hook still running after the grace period: SIGKILL to its process group")
			_ = syscall.Kill(-pid, syscall.SIGKILL)
			l.until(func() bool { return l.exited }, time.Time{})
		}
		// At a stop of patchd, a hook that exited on its own (it ended
		// before the signal arrived, or trapped it and chose its exit
		// code) reports that exit; only one the signal ended is
		// "interrupted" and runs again. A timeout stays a timeout.
		if rn.cancelled && l.waitErr == nil && l.status.Exited() {
			rn.cancelled = false
		}
	}
	rn.duration = time.Since(start)

	// The leader is gone; give its output a moment to end, then stop
	// reading whatever still holds it.
	rn.leftover = !l.until(l.drained, time.Now().Add(opts.DrainTimeout))
	l.finishStreams()
	rn.stdout, rn.stderr = l.pipes[0].s.tail.String(), l.pipes[1].s.tail.String()

	switch {
	case l.waitErr != nil:
		rn.startErr = l.waitErr
	case l.status.Exited():
		rn.exitCode = l.status.ExitStatus()
	case l.status.Signaled():
		rn.signal = l.status.Signal()
	}
	return rn
}

// hookLoop is the state of one hook's epoll loop.
type hookLoop struct {
	epfd   int
	pipes  [2]hookPipe // stdout, stderr
	events [4]unix.EpollEvent
	buf    *[readChunk]byte

	pid     int
	pidfd   int                // readable once the hook exited; -1 in the fallback
	waited  chan waitOutcome   // the fallback's wait(2) result
	waiter  sync.WaitGroup     // the fallback's waiting goroutine
	exited  bool               // the hook's leader was reaped
	status  syscall.WaitStatus // its status, when exited
	waitErr error              // wait(2) failed (never expected)

	// wake is an eventfd that ctx's end (and the fallback waiter) write;
	// mu keeps a late writer off the closed descriptor's number.
	mu   sync.Mutex
	wake int
}

type hookPipe struct {
	fd int // -1 once EOF was read or the pipe was given up
	s  *stream
}

type waitOutcome struct {
	status syscall.WaitStatus
	err    error
}

// devNull is the hooks' stdin, opened once and kept (close-on-exec).
var devNull = sync.OnceValues(func() (int, error) {
	return unix.Open(os.DevNull, unix.O_RDONLY|unix.O_CLOEXEC, 0)
})

// readBufs recycles the loop's read buffer between hooks.
var readBufs = sync.Pool{New: func() any { return new([readChunk]byte) }}

// newHookLoop makes the pipes, the eventfd and the epoll set before the
// fork, so that nothing can fail once a hook runs. It returns the
// descriptors the child gets as stdin, stdout and stderr; the caller closes
// the last two after the fork.
func newHookLoop(log *slog.Logger, maxLog int64) (*hookLoop, [3]uintptr, error) {
	l := &hookLoop{epfd: -1, pidfd: -1, wake: -1}
	l.pipes[0] = hookPipe{fd: -1, s: &stream{logger: log, name: "stdout", maxLog: maxLog}}
	l.pipes[1] = hookPipe{fd: -1, s: &stream{logger: log, name: "stderr", maxLog: maxLog}}
	var child [3]uintptr
	fail := func(what string, err error) (*hookLoop, [3]uintptr, error) {
		for _, fd := range child[1:] {
			if fd != 0 {
				_ = unix.Close(int(fd))
			}
		}
		l.close()
		return nil, [3]uintptr{}, fmt.Errorf("%s: %w", what, err)
	}
	null, err := devNull()
	if err != nil {
		return fail("open "+os.DevNull+" for the hooks' stdin", err)
	}
	child[0] = uintptr(null)
	for i := range l.pipes {
		var p [2]int
		// Blocking ends: the read end is read only when epoll says it is
		// ready, and the hook's write end must block like any pipe.
		if err := unix.Pipe2(p[:], unix.O_CLOEXEC); err != nil {
			return fail("pipe for the hook's "+l.pipes[i].s.name, err)
		}
		l.pipes[i].fd, child[i+1] = p[0], uintptr(p[1])
	}
	if l.wake, err = unix.Eventfd(0, unix.EFD_CLOEXEC|unix.EFD_NONBLOCK); err != nil {
		return fail("eventfd", err)
	}
	if l.epfd, err = unix.EpollCreate1(unix.EPOLL_CLOEXEC); err != nil {
		return fail("epoll", err)
	}
	for _, fd := range []int{l.pipes[0].fd, l.pipes[1].fd, l.wake} {
		if err := unix.EpollCtl(l.epfd, unix.EPOLL_CTL_ADD, fd, &unix.EpollEvent{Events: unix.EPOLLIN, Fd: int32(fd)}); err != nil {
			return fail("epoll_ctl", err)
		}
	}
	l.buf = readBufs.Get().(*[readChunk]byte)
	return l, child, nil
}

// pidfdOpen is unix.PidfdOpen; a test replaces it to take the fallback.
var pidfdOpen = unix.PidfdOpen

// watchExit arranges for the loop to learn of the exit of pid: through a
// pidfd (Linux 5.3), else through a goroutine blocked in wait(2) that
// writes the eventfd.
func (l *hookLoop) watchExit(pid int) {
	l.pid = pid
	fd, err := pidfdOpen(pid, 0)
	if err == nil {
		err = unix.EpollCtl(l.epfd, unix.EPOLL_CTL_ADD, fd, &unix.EpollEvent{Events: unix.EPOLLIN, Fd: int32(fd)})
		if err == nil {
			l.pidfd = fd
			return
		}
		_ = unix.Close(fd)
	}
	l.waited = make(chan waitOutcome, 1)
	l.waiter.Add(1)
	go func() {
		defer l.waiter.Done()
		var ws syscall.WaitStatus
		_, err := wait4(pid, &ws)
		l.waited <- waitOutcome{ws, err}
		l.wakeUp()
	}()
}

func wait4(pid int, ws *syscall.WaitStatus) (int, error) {
	for {
		wpid, err := syscall.Wait4(pid, ws, 0, nil)
		if err != syscall.EINTR {
			return wpid, err
		}
	}
}

// wakeUp makes the loop look at ctx and the fallback waiter.
func (l *hookLoop) wakeUp() {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.wake >= 0 {
		one := [8]byte{1}
		_, _ = unix.Write(l.wake, one[:])
	}
}

// until pumps until done reports true, or deadline (zero: none) passes;
// it reports done's last answer.
func (l *hookLoop) until(done func() bool, deadline time.Time) bool {
	for !done() {
		if l.pump(deadline) {
			return done()
		}
	}
	return true
}

// pump waits until something is ready or deadline (zero: no deadline)
// and handles all that is ready. It reports whether deadline has passed.
func (l *hookLoop) pump(deadline time.Time) (expired bool) {
	msec := -1
	if !deadline.IsZero() {
		// Rounded up: a wait that ends a fraction of a millisecond early
		// would only go round again.
		msec = int(max(time.Until(deadline)+time.Millisecond-1, 0) / time.Millisecond)
	}
	n, err := unix.EpollWait(l.epfd, l.events[:], msec)
	if err != nil && err != unix.EINTR {
		// Only a bad descriptor or buffer gives another error: a bug.
		panic(fmt.Sprintf("hooks: epoll_wait: %v", err))
	}
	for _, ev := range l.events[:max(n, 0)] {
		switch fd := int(ev.Fd); fd {
		case l.pidfd:
			l.reap()
		case l.wake:
			var b [8]byte
			_, _ = unix.Read(l.wake, b[:])
			if l.waited != nil {
				select {
				case w := <-l.waited:
					l.exited, l.status, l.waitErr = true, w.status, w.err
				default:
				}
			}
		default:
			l.read(fd)
		}
	}
	return !deadline.IsZero() && !time.Now().Before(deadline)
}

// reap collects the exited hook once its pidfd is readable.
func (l *hookLoop) reap() {
	_, err := wait4(l.pid, &l.status)
	l.exited, l.waitErr = true, err
	_ = unix.EpollCtl(l.epfd, unix.EPOLL_CTL_DEL, l.pidfd, nil)
	_ = unix.Close(l.pidfd)
	l.pidfd = -1
}

// read takes what is ready on one pipe; EOF or an error ends the pipe.
func (l *hookLoop) read(fd int) {
	for i := range l.pipes {
		p := &l.pipes[i]
		if p.fd != fd {
			continue
		}
		n, err := unix.Read(fd, l.buf[:])
		if n > 0 {
			p.s.write(l.buf[:n])
			return
		}
		if err == unix.EINTR || err == unix.EAGAIN {
			return
		}
		l.closePipe(p)
		return
	}
}

func (l *hookLoop) closePipe(p *hookPipe) {
	if p.fd < 0 {
		return
	}
	_ = unix.EpollCtl(l.epfd, unix.EPOLL_CTL_DEL, p.fd, nil)
	_ = unix.Close(p.fd)
	p.fd = -1
}

// drained reports whether both pipes reached EOF.
func (l *hookLoop) drained() bool { return l.pipes[0].fd < 0 && l.pipes[1].fd < 0 }

// finishStreams gives up the pipes still open (a background process holds
// them) and logs each stream's last line.
func (l *hookLoop) finishStreams() {
	for i := range l.pipes {
		l.closePipe(&l.pipes[i])
		l.pipes[i].s.finish()
	}
}

// close releases every descriptor and waits for the fallback waiter, which
// has ended or is about to: it is only left when the hook exited.
func (l *hookLoop) close() {
	for i := range l.pipes {
		l.closePipe(&l.pipes[i])
	}
	if l.pidfd >= 0 {
		_ = unix.Close(l.pidfd)
		l.pidfd = -1
	}
	l.waiter.Wait()
	l.mu.Lock()
	if l.wake >= 0 {
		_ = unix.Close(l.wake)
		l.wake = -1
	}
	l.mu.Unlock()
	if l.epfd >= 0 {
		_ = unix.Close(l.epfd)
		l.epfd = -1
	}
	if l.buf != nil {
		readBufs.Put(l.buf)
		l.buf = nil
	}
}
