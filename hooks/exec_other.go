//go:build !linux

package hooks

import (
	"context"
	"errors"
	"log/slog"
	"time"
)

// execute needs Linux: hooks run under epoll, a pidfd and process groups
// (exec_linux.go), and patchd is built and shipped for Linux only.
func execute(context.Context, Hook, Env, Options, time.Duration, *slog.Logger) run {
	return run{exitCode: -1, startErr: errors.New("hooks run only on Linux")}
}
