//go:build !patchd_cli

package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"os/signal"
	"runtime/debug"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	versioncollector "github.com/prometheus/client_golang/prometheus/collectors/version"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/prometheus/common/promslog"
	"github.com/prometheus/common/version"
	"github.com/prometheus/exporter-toolkit/web"
	"golang.org/x/sync/errgroup"

	"github.com/patchd/patchd/agent/agentlog"
	"github.com/patchd/patchd/agent/config"
	"github.com/patchd/patchd/agent/control"
	"github.com/patchd/patchd/agent/ssm"
)

// stopTimeout bounds a clean stop after SIGTERM; systemd's TimeoutStopSec in
// the unit is longer so that patchd, not systemd, decides what is cut short.
const stopTimeout = 10 * time.Second

// actor is a long-running part: Run blocks until ctx is done or it fails.
type actor struct {
	name string
	run  func(ctx context.Context) error
}

// daemon is the wiring of `patchd run`. Each area adds itself in its own
// setup* function (daemon_*.go): consumers of events first, producers last,
// so a producer never emits before its subscribers exist.
type daemon struct {
	flags  *config.Flags
	cfg    atomic.Pointer[config.Config]
	logger *slog.Logger
	level  *promslog.Level
	reg    *prometheus.Registry

	control *control.Server
	actors  []actor
	// reloaders get each new valid configuration after SIGHUP.
	reloaders []func(config.Config)
	// Event subscribers; producers call them from their own goroutine, so a
	// subscriber must only enqueue. A log event's strings are valid only
	// during the call (agentlog.Event): a subscriber enqueues its Clone.
	logSubs []func(agentlog.Event)
	cmdSubs []func(ssm.CommandEvent)

	// stopExtra, when set, may lengthen the stop for work that must finish
	// before the host goes down (pre-reboot hooks at shutdown). It is asked
	// once, when the stop begins; the unit's TimeoutStopSec must exceed it.
	stopExtra func() time.Duration

	reloadOK   prometheus.Gauge
	reloadTime prometheus.Gauge

	hooks     *hooksPart
	cycle     *cyclePart
	keeper    *keeperPart
	hostState *hostStatePart
	agentLog  *agentLogPart
	commands  *commandsPart
	fleet     *fleetPart
}

func (d *daemon) config() config.Config { return *d.cfg.Load() }

func (d *daemon) addActor(name string, run func(ctx context.Context) error) {
	d.actors = append(d.actors, actor{name, run})
}

func (d *daemon) onReload(f func(config.Config)) { d.reloaders = append(d.reloaders, f) }

// emitLog hands a log event to every subscriber as it came: each clones
// what it keeps, and most keep nothing.
func (d *daemon) emitLog(ev agentlog.Event) {
	for _, s := range d.logSubs {
		s(ev)
	}
}

func (d *daemon) emitCommand(ev ssm.CommandEvent) {
	for _, s := range d.cmdSubs {
		s(ev)
	}
}

// runDaemonCommand is `patchd run`.
func runDaemonCommand(flags *config.Flags) int {
	setGCPercent()
	cfg, err := flags.Resolve()
	if err != nil {
		return badConfig(os.Stderr, "run", err)
	}
	logger, level := newLogger(cfg)
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	if err := runDaemon(ctx, flags, cfg, logger, level); err != nil {
		logger.Error("patchd stopped with an error", "err", err)
		return exitFailure
	}
	return exitOK
}

// daemonGCPercent is the daemon's GOGC unless the environment sets one. At
// idle, patchd's heap is mostly what each scrape allocates and drops; Go's
// default (100) lets it grow to twice the live heap before collecting, which
// kept about 1.5 MiB more resident than 50 does and put the idle RSS over its
// 20 MB budget, for a GC cost too small to measure at idle (BENCHMARKS.md,
// "Idle footprint").
const daemonGCPercent = 50

func setGCPercent() {
	if os.Getenv("GOGC") == "" {
		debug.SetGCPercent(daemonGCPercent)
	}
}

// runDaemon builds every part, runs them until ctx is done, and stops them
// together.
func runDaemon(ctx context.Context, flags *config.Flags, cfg config.Config, logger *slog.Logger, level *promslog.Level) error {
	start := time.Now()
	d := &daemon{flags: flags, logger: logger, level: level, reg: prometheus.NewRegistry()}
	d.cfg.Store(&cfg)
	d.reg.MustRegister(
		versioncollector.NewCollector("patchd"),
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
	)
	d.reloadOK = prometheus.NewGauge(prometheus.GaugeOpts{
		Name: "patchd_config_last_reload_successful",
		Help: "Whether the last configuration load or reload succeeded (1) or was rejected (0).",
	})
	d.reloadTime = prometheus.NewGauge(prometheus.GaugeOpts{
		Name: "patchd_config_last_reload_success_timestamp_seconds",
		Help: "Time of the last successful configuration load or reload.",
	})
	d.reg.MustRegister(d.reloadOK, d.reloadTime)
	d.reloadOK.Set(1)
	d.reloadTime.SetToCurrentTime()

	if err := os.MkdirAll(cfg.Paths.State, 0o700); err != nil {
		return fmt.Errorf("state directory %s: %w (create it, owned by root, mode 0700)", cfg.Paths.State, err)
	}
	d.control = control.NewServer(cfg.Control.Socket, logger)
	d.addActor("control", d.control.Run)

	for _, setup := range []struct {
		name string
		fn   func() error
	}{
		{"hooks", d.setupHooks},
		{"fleet", d.setupFleet},
		{"cycle", d.setupCycle},
		{"keeper", d.setupKeeper},
		{"host-state", d.setupHostState},
		{"commands", d.setupCommands},
		{"agent-log", d.setupAgentLog},
	} {
		if err := setup.fn(); err != nil {
			return fmt.Errorf("%s: %w", setup.name, err)
		}
	}

	if cfg.Web.ListenAddress != "" {
		d.addActor("web", d.serveMetrics)
	}
	// SIGHUP is caught from here on, before "patchd started": its default
	// action ends the process, and a reload sent right after the start
	// (systemctl reload, a test) must not kill patchd.
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	d.addActor("reload", func(ctx context.Context) error { return d.reloadOnSIGHUP(ctx, hup) })

	logger.Info("patchd starting", "version", version.Version, "revision", version.GetRevision(),
		"config", flags.File, "hooks", cfg.Paths.Hooks, "state", cfg.Paths.State,
		"agent_data", cfg.Paths.AgentData, "agent_logs", cfg.Paths.AgentLogs)
	return d.runActors(ctx, start)
}

// runActors runs every actor; the first to fail stops all the others, and
// a stop (ctx done) gives them stopTimeout to return.
func (d *daemon) runActors(ctx context.Context, start time.Time) error {
	g, gctx := errgroup.WithContext(ctx)
	var mu sync.Mutex
	running := map[string]bool{}
	for _, a := range d.actors {
		mu.Lock()
		running[a.name] = true
		mu.Unlock()
		g.Go(func() error {
			err := a.run(gctx)
			mu.Lock()
			delete(running, a.name)
			mu.Unlock()
			if err != nil && !errors.Is(err, context.Canceled) {
				return fmt.Errorf("%s: %w", a.name, err)
			}
			if gctx.Err() == nil {
				// An actor must not end on its own: that would leave part
				// of patchd silently dead.
				return fmt.Errorf("%s: stopped unexpectedly", a.name)
			}
			return nil
		})
	}
	d.logger.Info("patchd started", "actors", len(d.actors), "startup", time.Since(start).Round(time.Millisecond))
	done := make(chan error, 1)
	go func() { done <- g.Wait() }()
	select {
	case err := <-done:
		return err
	case <-gctx.Done():
	}
	limit := stopTimeout
	if d.stopExtra != nil {
		limit += d.stopExtra()
	}
	d.logger.Info("patchd stopping", "limit", limit)
	select {
	case err := <-done:
		if err == nil {
			d.logger.Info("patchd stopped")
		}
		return err
	case <-time.After(limit):
		mu.Lock()
		defer mu.Unlock()
		names := make([]string, 0, len(running))
		for n := range running {
			names = append(names, n)
		}
		return fmt.Errorf("parts still running %s after SIGTERM: %v", limit, names)
	}
}

func (d *daemon) serveMetrics(ctx context.Context) error {
	cfg := d.config()
	// The toolkit's own read of the file would block on a FIFO, and a
	// blocked read cannot be stopped at shutdown.
	if err := validateWebConfig(cfg.Web.ConfigFile); err != nil {
		return err
	}
	mux := http.NewServeMux()
	mux.Handle("/metrics", promhttp.HandlerFor(d.reg, promhttp.HandlerOpts{
		ErrorLog:          slog.NewLogLogger(d.logger.Handler(), slog.LevelError),
		ErrorHandling:     promhttp.ContinueOnError,
		EnableOpenMetrics: true,
		Registry:          d.reg,
	}))
	landing, err := web.NewLandingPage(web.LandingConfig{
		Name:        "patchd",
		Description: "Patch hooks and amazon-ssm-agent keeper",
		Version:     version.Info(),
		Links:       []web.LandingLinks{{Address: "/metrics", Text: "Metrics"}},
	})
	if err != nil {
		return err
	}
	mux.Handle("/", landing)
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	addrs := []string{cfg.Web.ListenAddress}
	systemdSocket := false
	configFile := cfg.Web.ConfigFile
	errc := make(chan error, 1)
	go func() {
		errc <- web.ListenAndServe(srv, &web.FlagConfig{
			WebListenAddresses: &addrs, WebSystemdSocket: &systemdSocket, WebConfigFile: &configFile,
		}, d.logger)
	}()
	select {
	case err := <-errc:
		return fmt.Errorf("metrics endpoint %s: %w", cfg.Web.ListenAddress, err)
	case <-ctx.Done():
		sctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		_ = srv.Shutdown(sctx)
		<-errc
		return nil
	}
}

// reloadOnSIGHUP re-reads the configuration. An invalid file keeps the
// running configuration; the reason is logged and the metric set to 0.
func (d *daemon) reloadOnSIGHUP(ctx context.Context, hup chan os.Signal) error {
	defer signal.Stop(hup)
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-hup:
			d.reload()
		}
	}
}

func (d *daemon) reload() {
	old := d.config()
	cfg, err := d.flags.Resolve()
	if err != nil {
		d.reloadOK.Set(0)
		d.logger.Error("configuration reload rejected; keeping the running configuration", "file", d.flags.File, "err", err)
		return
	}
	if cfg.Paths != old.Paths || cfg.Control != old.Control || cfg.Web != old.Web {
		d.logger.Warn("paths, control socket and web settings change only at restart; run systemctl restart patchd")
		cfg.Paths, cfg.Control, cfg.Web = old.Paths, old.Control, old.Web
	}
	_ = d.level.Set(cfg.Log.Level)
	d.cfg.Store(&cfg)
	for _, r := range d.reloaders {
		r(cfg)
	}
	d.reloadOK.Set(1)
	d.reloadTime.SetToCurrentTime()
	d.logger.Info("configuration reloaded", "file", d.flags.File)
}
