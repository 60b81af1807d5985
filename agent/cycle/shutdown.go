package cycle

import (
	"context"
	"os/exec"
	"strings"
)

// ShutdownDetector tells whether the host is going down.
type ShutdownDetector interface {
	ShuttingDown(ctx context.Context) bool
}

// SystemdShutdown asks systemd and logind. `systemctl is-system-running`
// prints "stopping" once the shutdown transaction runs; logind's
// PreparingForShutdown is true from the moment a shutdown is scheduled.
// Either is enough; a host without them is never shutting down.
type SystemdShutdown struct{}

func (SystemdShutdown) ShuttingDown(ctx context.Context) bool {
	out, _ := exec.CommandContext(ctx, "systemctl", "is-system-running").Output()
	if strings.TrimSpace(string(out)) == "stopping" {
		return true
	}
	out, err := exec.CommandContext(ctx, "busctl", "get-property", "org.freedesktop.login1",
		"/org/freedesktop/login1", "org.freedesktop.login1.Manager", "PreparingForShutdown").Output()
	return err == nil && strings.TrimSpace(string(out)) == "b true"
}
