package keeper

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"sync"
)

// Manager restarts amazon-ssm-agent through the host's service manager.
type Manager interface {
	// Name says which manager and unit, e.g. systemd:amazon-ssm-agent.service.
	Name() string
	Restart(ctx context.Context) error
	// Active reports whether the agent's service is running.
	Active(ctx context.Context) (bool, error)
}

// Units and names of amazon-ssm-agent's service (docs/agent-formats.md,
// "Service and processes").
const (
	SystemdUnit    = "amazon-ssm-agent.service"
	SnapUnit       = "snap.amazon-ssm-agent.amazon-ssm-agent.service"
	UpstartJob     = "amazon-ssm-agent"
	WindowsService = "AmazonSSMAgent"
)

var (
	_ Manager = (*Systemd)(nil)
	_ Manager = (*Upstart)(nil)
	_ Manager = (*Command)(nil)
	_ Manager = (*Windows)(nil)
	_ Manager = None{}
)

// run runs a manager's tool and returns its combined output; a failure
// carries the output, which is where systemctl and initctl say why.
func run(ctx context.Context, name string, args ...string) (string, error) {
	var out bytes.Buffer
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Stdout, cmd.Stderr = &out, &out
	// A clean, predictable environment: no pager, no colour, no prompts.
	cmd.Env = []string{"PATH=/usr/sbin:/usr/bin:/sbin:/bin", "LC_ALL=C", "SYSTEMD_PAGER=", "SYSTEMD_COLORS=0"}
	err := cmd.Run()
	text := strings.TrimSpace(out.String())
	if err != nil {
		return text, fmt.Errorf("%s %s: %w: %s", name, strings.Join(args, " "), err, text)
	}
	return text, nil
}

// Systemd drives a unit with systemctl.
type Systemd struct {
	Systemctl string // path of systemctl; tests put a fake one here
	Unit      string
}

func (s *Systemd) Name() string { return "systemd:" + s.Unit }

func (s *Systemd) Restart(ctx context.Context) error {
	_, err := run(ctx, s.Systemctl, "restart", s.Unit)
	return err
}

// Active asks `systemctl is-active`, which exits non-zero for every state
// but active; only a failure to run it at all is an error.
func (s *Systemd) Active(ctx context.Context) (bool, error) {
	out, err := run(ctx, s.Systemctl, "is-active", s.Unit)
	if err == nil {
		return strings.TrimSpace(out) == "active", nil
	}
	var ee *exec.ExitError
	if errors.As(err, &ee) && out != "" && !strings.Contains(out, " ") {
		// inactive, failed, activating, deactivating, unknown...
		return false, nil
	}
	return false, err
}

// loaded reports whether systemd knows unit (LoadState=loaded).
func (s *Systemd) loaded(ctx context.Context, unit string) (bool, error) {
	out, err := run(ctx, s.Systemctl, "show", "-p", "LoadState", unit)
	if err != nil {
		return false, err
	}
	return strings.TrimSpace(out) == "LoadState=loaded", nil
}

// Upstart drives the job with initctl (Amazon Linux 1).
type Upstart struct {
	Initctl string
	Job     string
}

func (u *Upstart) Name() string { return "upstart:" + u.Job }

// Restart restarts a running job; initctl refuses to restart a stopped one,
// which then is started instead.
func (u *Upstart) Restart(ctx context.Context) error {
	running, err := u.Active(ctx)
	if err != nil {
		return err
	}
	if running {
		_, err = run(ctx, u.Initctl, "restart", u.Job)
	} else {
		_, err = run(ctx, u.Initctl, "start", u.Job)
	}
	return err
}

// Active parses `initctl status`: "amazon-ssm-agent start/running, process N".
func (u *Upstart) Active(ctx context.Context) (bool, error) {
	out, err := run(ctx, u.Initctl, "status", u.Job)
	if err != nil {
		if strings.Contains(out, "Unknown job") {
			return false, fmt.Errorf("upstart has no job %s: is amazon-ssm-agent installed?", u.Job)
		}
		return false, err
	}
	return strings.Contains(out, "start/running"), nil
}

// Command restarts the agent with an operator's command (sh -c). patchd
// cannot ask such a setup whether the agent runs; it reports the outcome of
// the last restart command (active before the first).
type Command struct {
	Shell   string // /bin/sh
	Command string

	mu     sync.Mutex
	failed bool
}

func (c *Command) Name() string { return "command" }

func (c *Command) Restart(ctx context.Context) error {
	_, err := run(ctx, c.Shell, "-c", c.Command)
	c.mu.Lock()
	c.failed = err != nil
	c.mu.Unlock()
	if err != nil {
		return fmt.Errorf("agent.restart_command: %w", err)
	}
	return nil
}

func (c *Command) Active(context.Context) (bool, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return !c.failed, nil
}

// None is used when no service manager was found: patchd still watches and
// reports, and says why it cannot restart.
type None struct{ Reason string }

func (n None) Name() string                         { return "none" }
func (n None) Restart(context.Context) error        { return errors.New(n.Reason) }
func (n None) Active(context.Context) (bool, error) { return false, errors.New(n.Reason) }

// DetectOptions are the host paths Detect looks at; tests replace them.
type DetectOptions struct {
	// Service is config's agent.service: auto, systemd, systemd:<unit>,
	// snap, upstart, windows or command.
	Service        string
	RestartCommand string
	Systemctl      string // default /usr/bin/systemctl, else found in PATH
	Initctl        string // default /sbin/initctl
	Shell          string // default /bin/sh
	// SystemdRunDir exists when systemd is the init system (/run/systemd/system).
	SystemdRunDir string
	GOOS          string
}

func (o *DetectOptions) defaults() {
	if o.Systemctl == "" {
		o.Systemctl = "/usr/bin/systemctl"
		if _, err := os.Stat(o.Systemctl); err != nil {
			if p, err := exec.LookPath("systemctl"); err == nil {
				o.Systemctl = p
			}
		}
	}
	if o.Initctl == "" {
		o.Initctl = "/sbin/initctl"
	}
	if o.Shell == "" {
		o.Shell = "/bin/sh"
	}
	if o.SystemdRunDir == "" {
		o.SystemdRunDir = "/run/systemd/system"
	}
	if o.GOOS == "" {
		o.GOOS = runtime.GOOS
	}
}

// Detect picks the service manager once at start. With auto: Windows's
// service manager on Windows; systemd when it is the init system (the
// classic unit, else the snap unit, whichever systemd has loaded); upstart
// when initctl exists; otherwise None, with the reason.
func Detect(ctx context.Context, o DetectOptions) (Manager, error) {
	o.defaults()
	switch svc := o.Service; {
	case svc == "command":
		if strings.TrimSpace(o.RestartCommand) == "" {
			return nil, errors.New("agent.service is command but agent.restart_command is empty")
		}
		return &Command{Shell: o.Shell, Command: o.RestartCommand}, nil
	case svc == "windows":
		return newWindows()
	case svc == "upstart":
		return &Upstart{Initctl: o.Initctl, Job: UpstartJob}, nil
	case svc == "snap":
		return &Systemd{Systemctl: o.Systemctl, Unit: SnapUnit}, nil
	case strings.HasPrefix(svc, "systemd:"):
		return &Systemd{Systemctl: o.Systemctl, Unit: strings.TrimPrefix(svc, "systemd:")}, nil
	case svc == "systemd":
		return detectUnit(ctx, o.Systemctl), nil
	case svc == "auto" || svc == "":
	default:
		return nil, fmt.Errorf("agent.service %q is not a service manager; use auto, systemd, systemd:<unit>, snap, upstart, windows or command", svc)
	}
	if o.GOOS == "windows" {
		return newWindows()
	}
	if fi, err := os.Stat(o.SystemdRunDir); err == nil && fi.IsDir() {
		if _, err := os.Stat(o.Systemctl); err == nil {
			return detectUnit(ctx, o.Systemctl), nil
		}
	}
	if _, err := os.Stat(o.Initctl); err == nil {
		return &Upstart{Initctl: o.Initctl, Job: UpstartJob}, nil
	}
	if o.RestartCommand != "" {
		return &Command{Shell: o.Shell, Command: o.RestartCommand}, nil
	}
	return None{Reason: "no service manager found (no systemd, upstart or Windows); set agent.service: command and agent.restart_command"}, nil
}

// detectUnit prefers the classic unit and takes the snap one (Ubuntu AMIs)
// when only that is loaded. When neither is (agent not installed yet) the
// classic name is used; the keeper then reports the agent down.
func detectUnit(ctx context.Context, systemctl string) *Systemd {
	s := &Systemd{Systemctl: systemctl, Unit: SystemdUnit}
	for _, unit := range []string{SystemdUnit, SnapUnit} {
		if ok, err := s.loaded(ctx, unit); err == nil && ok {
			s.Unit = unit
			return s
		}
	}
	return s
}
