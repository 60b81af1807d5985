// Package hoststate exports the host's patch state: whether a reboot is
// required (and since when), how many updates are pending, whether the
// running kernel is the newest installed, and the counts of the last AWS
// patch operation. Package managers are slow and lock-prone, so an actor
// checks on a timer (host_state.interval) and the collector serves the cached
// result: a scrape never runs a command.
package hoststate

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/jonboulle/clockwork"
	"github.com/patchd/patchd/agent/atomicfile"
	"github.com/patchd/patchd/agent/config"
	"github.com/patchd/patchd/agent/safeopen"
)

// StateFile is the file in the state directory that keeps what must survive
// a restart: when the reboot became required.
const StateFile = "hoststate.json"

// Options are the collector's inputs.
type Options struct {
	Config   config.HostState
	StateDir string
	Logger   *slog.Logger
	// Clock drives the check timer; nil is the real clock.
	Clock clockwork.Clock
	// LookPath finds the package-manager commands; nil is exec.LookPath
	// (patchd's PATH).
	LookPath func(string) (string, error)
	// Runner runs them; nil runs them for real with LookPath.
	Runner Runner
	// FirstDelay is the wait before the first round: long enough that a
	// patchd restarted in a loop, or a host still booting, is not also
	// running apt or dnf; short enough that a new host reports soon.
	FirstDelay time.Duration
}

// HostState is both the checking actor (Run) and the cache's
// prometheus.Collector.
type HostState struct {
	log      *slog.Logger
	clock    clockwork.Clock
	lookPath func(string) (string, error)
	runner   Runner
	state    string
	first    time.Duration
	reset    chan struct{}
	// afterRound and afterReset, when set by a test, are called after each
	// round of checks and after a reload reset the timer.
	afterRound, afterReset func()

	mu  sync.Mutex
	cfg config.HostState

	reboot, updates, kernel, summary checkState

	rebootRequired bool
	rebootSince    time.Time
	pending        Pending
	kernelLatest   bool
	patchSummary   PatchSummary
}

// checkState is one check's bookkeeping: whether its last run gave a value
// (a failed check keeps the previous value, and the timestamp shows its age),
// when it last succeeded, and how often it failed.
type checkState struct {
	ok     bool
	last   time.Time
	errors float64
}

type persisted struct {
	// RebootRequiredSince is Unix seconds; 0 when no reboot is required.
	RebootRequiredSince float64 `json:"reboot_required_since"`
}

// New loads the persisted state. A corrupt state file is logged and ignored:
// the timestamp it held is lost, the collectors still work.
func New(o Options) *HostState {
	h := &HostState{
		log: o.Logger, clock: o.Clock, lookPath: o.LookPath, runner: o.Runner,
		state: o.StateDir, first: o.FirstDelay, cfg: o.Config, reset: make(chan struct{}, 1),
	}
	if h.log == nil {
		h.log = slog.New(slog.DiscardHandler)
	}
	if h.clock == nil {
		h.clock = clockwork.NewRealClock()
	}
	if h.lookPath == nil {
		h.lookPath = exec.LookPath
	}
	if h.runner == nil {
		h.runner = execRunner{timeout: o.Config.CommandTimeout, lookPath: h.lookPath}
	}
	h.load()
	return h
}

// maxFileSize bounds the files host state reads: its own state file and
// the patch summary AWS-RunPatchBaseline writes (counts and a few lists of
// package names, far below this).
const maxFileSize = 16 << 20

func (h *HostState) statePath() string { return filepath.Join(h.state, StateFile) }

func (h *HostState) load() {
	var p persisted
	data, err := safeopen.ReadFile(h.statePath(), maxFileSize)
	if errors.Is(err, fs.ErrNotExist) {
		return
	}
	if err == nil {
		err = jsonUnmarshal(data, &p)
	}
	if err != nil {
		h.log.Warn("host state file unreadable; the time the reboot became required is lost", "path", h.statePath(), "err", err)
		return
	}
	if p.RebootRequiredSince > 0 {
		h.rebootSince = time.Unix(0, int64(p.RebootRequiredSince*1e9))
	}
}

func (h *HostState) save() {
	var p persisted
	if !h.rebootSince.IsZero() {
		p.RebootRequiredSince = float64(h.rebootSince.UnixNano()) / 1e9
	}
	if err := atomicfile.WriteJSON(h.statePath(), p, 0o600); err != nil {
		h.log.Error("saving host state; the reboot-required time will not survive a restart", "path", h.statePath(), "err", err)
	}
}

// SetConfig applies a reloaded configuration; a new interval takes effect
// from now.
func (h *HostState) SetConfig(c config.HostState) {
	h.mu.Lock()
	changed := c.Interval != h.cfg.Interval
	h.cfg = c
	if r, ok := h.runner.(execRunner); ok {
		r.timeout = c.CommandTimeout
		h.runner = r
	}
	h.mu.Unlock()
	if changed {
		select {
		case h.reset <- struct{}{}:
		default:
		}
	}
}

func (h *HostState) config() (config.HostState, Runner) {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.cfg, h.runner
}

// Run checks once after the first delay, then every interval, until ctx is
// done.
func (h *HostState) Run(ctx context.Context) error {
	timer := h.clock.NewTimer(h.first)
	defer timer.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-h.reset:
			cfg, _ := h.config()
			timer.Reset(cfg.Interval)
			if h.afterReset != nil {
				h.afterReset()
			}
		case <-timer.Chan():
			h.CheckAll(ctx)
			if ctx.Err() != nil {
				return nil
			}
			cfg, _ := h.config()
			timer.Reset(cfg.Interval)
			if h.afterRound != nil {
				h.afterRound()
			}
		}
	}
}

// family is the host's package manager.
type family string

const (
	famApt family = "apt"
	famDNF family = "dnf"
	famYum family = "yum"
)

func (h *HostState) family() (family, error) {
	for _, f := range []struct {
		cmd string
		fam family
	}{{"apt-get", famApt}, {"dnf", famDNF}, {"yum", famYum}} {
		if _, err := h.lookPath(f.cmd); err == nil {
			return f.fam, nil
		}
	}
	return "", errors.New("no package manager found (apt-get, dnf or yum in PATH)")
}

// CheckAll runs every check once. Errors are counted and logged per check;
// one failing check never hides the others.
func (h *HostState) CheckAll(ctx context.Context) {
	cfg, runner := h.config()
	fam, famErr := h.family()
	h.record(ctx, &h.reboot, "reboot_required", func() error {
		if famErr != nil {
			return famErr
		}
		return h.checkReboot(ctx, cfg, runner, fam)
	})
	h.record(ctx, &h.updates, "updates_pending", func() error {
		if famErr != nil {
			return famErr
		}
		return h.checkUpdates(ctx, cfg, runner, fam)
	})
	h.record(ctx, &h.kernel, "kernel", func() error {
		if famErr != nil {
			return famErr
		}
		return h.checkKernel(ctx, runner, fam)
	})
	h.record(ctx, &h.summary, "aws_patch", func() error { return h.checkSummary(cfg) })
}

func (h *HostState) record(ctx context.Context, c *checkState, name string, check func() error) {
	start := h.clock.Now()
	err := check()
	if ctx.Err() != nil {
		// Cut short by the stop: not the host's fault.
		return
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	if err != nil {
		c.errors++
		h.log.Warn("host state check failed", "check", name, "err", err)
		return
	}
	c.ok = true
	c.last = h.clock.Now()
	h.log.Debug("host state checked", "check", name, "took", h.clock.Since(start))
}

func (h *HostState) checkReboot(ctx context.Context, cfg config.HostState, r Runner, fam family) error {
	var required bool
	var since time.Time
	if fam == famApt {
		fi, err := os.Stat(cfg.RebootRequiredFile)
		switch {
		case err == nil:
			// The marker's mtime is when the package asked for the reboot.
			required, since = true, fi.ModTime()
		case errors.Is(err, fs.ErrNotExist):
		default:
			return fmt.Errorf("reboot marker %s: %w", cfg.RebootRequiredFile, err)
		}
	} else {
		var res Result
		var err error
		if _, lerr := h.lookPath("needs-restarting"); lerr == nil {
			res, err = r.Run(ctx, "needs-restarting", "-r")
		} else {
			res, err = r.Run(ctx, string(fam), "-C", "-q", "needs-restarting", "-r")
		}
		if err != nil {
			return err
		}
		required, err = ParseNeedsRestarting(res.Stdout+res.Stderr, res.Code)
		if err != nil {
			return err
		}
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	h.rebootRequired = required
	switch {
	case required && !since.IsZero() && !since.Equal(h.rebootSince):
		h.rebootSince = since
		h.save()
	case required && h.rebootSince.IsZero():
		// needs-restarting gives no time: the first check that saw it.
		h.rebootSince = h.clock.Now()
		h.save()
	case !required && !h.rebootSince.IsZero():
		h.rebootSince = time.Time{}
		h.save()
	}
	return nil
}

func (h *HostState) checkUpdates(ctx context.Context, cfg config.HostState, r Runner, fam family) error {
	var p Pending
	switch fam {
	case famApt:
		// dist-upgrade, not upgrade: Ubuntu's kernel updates are new
		// packages that a plain upgrade keeps back. Debug::NoLocking lets
		// the simulation run while apt is busy elsewhere; it reads the local
		// lists only (apt-get update is the operator's or the patch run's).
		res, err := r.Run(ctx, "apt-get", "-s", "-o", "Debug::NoLocking=1", "dist-upgrade")
		if err != nil {
			return err
		}
		if res.Code != 0 {
			return fmt.Errorf("apt-get -s dist-upgrade exited %d: %s", res.Code, head(res.Stderr+res.Stdout))
		}
		p, err = ParseAptSimulate(res.Stdout)
		if err != nil {
			return err
		}
	default:
		cache := []string{"-C"}
		if cfg.RefreshCache {
			cache = nil
		}
		res, err := r.Run(ctx, string(fam), append(cache, "-q", "check-update")...)
		if err != nil {
			return err
		}
		switch res.Code {
		case 0:
		case 100:
			if p.All, err = ParseDNFCheckUpdate(res.Stdout); err != nil {
				return err
			}
			if p.All == 0 {
				return fmt.Errorf("%s check-update exited 100 (updates available) but listed no package patchd can read: %q", fam, head(res.Stdout))
			}
		default:
			return fmt.Errorf("%s check-update exited %d: %s", fam, res.Code, head(res.Stderr+res.Stdout))
		}
		sec := "--security"
		if fam == famYum {
			sec = "security"
		}
		res, err = r.Run(ctx, string(fam), append(cache, "-q", "updateinfo", "list", sec)...)
		if err != nil {
			return err
		}
		if res.Code != 0 {
			return fmt.Errorf("%s updateinfo list %s exited %d: %s", fam, sec, res.Code, head(res.Stderr+res.Stdout))
		}
		if p.Security, err = ParseUpdateinfoSecurity(res.Stdout); err != nil {
			return err
		}
	}
	h.mu.Lock()
	h.pending = p
	h.mu.Unlock()
	return nil
}

func (h *HostState) checkKernel(ctx context.Context, r Runner, fam family) error {
	res, err := r.Run(ctx, "uname", "-r")
	if err != nil {
		return err
	}
	running := strings.TrimSpace(res.Stdout)
	if res.Code != 0 || running == "" {
		return fmt.Errorf("uname -r exited %d with %q", res.Code, head(res.Stdout+res.Stderr))
	}
	var ks []Kernel
	if fam == famApt {
		res, err = r.Run(ctx, "dpkg-query", "-W", "-f", "${Status}\t${Package}\t${Version}\n", "linux-image-*")
		if err != nil {
			return err
		}
		// dpkg-query exits 1 when no package matches; the parser then says
		// "no installed kernel".
		if res.Code > 1 {
			return fmt.Errorf("dpkg-query exited %d: %s", res.Code, head(res.Stderr))
		}
		ks, err = ParseDpkgKernels(res.Stdout)
	} else {
		res, err = r.Run(ctx, "rpm", "-q", "--qf", "%{VERSION}\t%{RELEASE}\t%{ARCH}\n", "kernel")
		if err != nil {
			return err
		}
		if res.Code != 0 {
			return fmt.Errorf("rpm -q kernel exited %d: %s", res.Code, head(res.Stdout+res.Stderr))
		}
		ks, err = ParseRPMKernels(res.Stdout)
	}
	if err != nil {
		return err
	}
	latest, err := RunningIsLatest(running, ks, fam != famApt)
	if err != nil {
		return err
	}
	h.mu.Lock()
	h.kernelLatest = latest
	h.mu.Unlock()
	return nil
}

func (h *HostState) checkSummary(cfg config.HostState) error {
	path := filepath.Join(cfg.PatchConfigurationDir, PatchSummaryFile)
	data, err := safeopen.ReadFile(path, maxFileSize)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("%s: %w (written by AWS-RunPatchBaseline on Linux after its first Scan or Install)", path, err)
		}
		return fmt.Errorf("reading %s: %w", path, err)
	}
	s, err := ParsePatchSummary(data)
	if err != nil {
		return fmt.Errorf("%s: %w; its counts are not exported", path, err)
	}
	h.mu.Lock()
	h.patchSummary = s
	h.mu.Unlock()
	return nil
}
