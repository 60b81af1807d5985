//go:build windows

package keeper

import (
	"context"
	"fmt"

	"github.com/kardianos/service"
)

// Windows drives the AmazonSSMAgent service through the service control
// manager.
type Windows struct{ svc service.Service }

// program satisfies service.Interface; patchd never runs the agent's
// service, it only controls it.
type program struct{}

func (program) Start(service.Service) error { return nil }
func (program) Stop(service.Service) error  { return nil }

func newWindows() (Manager, error) {
	s, err := service.New(program{}, &service.Config{Name: WindowsService})
	if err != nil {
		return nil, fmt.Errorf("windows service %s: %w", WindowsService, err)
	}
	return &Windows{svc: s}, nil
}

func (w *Windows) Name() string { return "windows:" + WindowsService }

func (w *Windows) Restart(context.Context) error {
	if err := service.Control(w.svc, "restart"); err != nil {
		return fmt.Errorf("restarting windows service %s: %w", WindowsService, err)
	}
	return nil
}

func (w *Windows) Active(context.Context) (bool, error) {
	st, err := w.svc.Status()
	if err != nil {
		return false, fmt.Errorf("windows service %s: %w", WindowsService, err)
	}
	return st == service.StatusRunning, nil
}
