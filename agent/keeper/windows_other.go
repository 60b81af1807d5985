//go:build !windows

package keeper

import (
	"context"
	"errors"
)

// Windows is only available on Windows.
type Windows struct{}

var errNotWindows = errors.New("agent.service windows works only on Windows; use auto, systemd, upstart or command here")

func newWindows() (Manager, error) { return nil, errNotWindows }

func (*Windows) Name() string                         { return "windows:" + WindowsService }
func (*Windows) Restart(context.Context) error        { return errNotWindows }
func (*Windows) Active(context.Context) (bool, error) { return false, errNotWindows }
