// Command tailcmd runs one agentlog.Tailer in a process of its own, for the
// rotation torture test (which SIGKILLs it) and the ingest benchmark (which
// measures its peak RSS). It writes each event's message as one line to
// stdout, or only counts them with -count.
package main

import (
	"context"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"runtime/pprof"
	"strings"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/patchd/patchd/agent/agentlog"
)

func main() {
	dir := flag.String("dir", "", "log directory")
	files := flag.String("files", "amazon-ssm-agent.log", "comma-separated file names")
	state := flag.String("state", "", "offsets file")
	grace := flag.Duration("grace", 5*time.Second, "rotation grace")
	persist := flag.Duration("persist", time.Second, "persist interval")
	idle := flag.Duration("idle", 500*time.Millisecond, "idle flush")
	count := flag.Bool("count", false, "only count events; print the count at exit")
	stopAt := flag.String("stop-at", "", "exit once an event's message contains this")
	debug := flag.Bool("debug", false, "log at debug level")
	cpuProfile := flag.String("cpuprofile", "", "write a CPU profile here")
	flag.Parse()
	if *cpuProfile != "" {
		f, err := os.Create(*cpuProfile)
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(2)
		}
		if err := pprof.StartCPUProfile(f); err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(2)
		}
		defer pprof.StopCPUProfile()
	}

	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var n int64
	// Unbuffered on purpose: a line is out of the process once Sink
	// returns, so a SIGKILL loses nothing already handed out.
	out := os.Stdout
	sink := func(e agentlog.Event) {
		n++
		if !*count {
			fmt.Fprintln(out, e.Message)
		}
		if *stopAt != "" && strings.Contains(e.Message, *stopAt) {
			cancel()
		}
	}
	// Metrics as the daemon keeps them, so that their cost is measured.
	fileList := strings.Split(*files, ",")
	metrics := agentlog.NewMetrics(prometheus.NewRegistry(), fileList)
	t, err := agentlog.New(agentlog.Options{
		Dir: *dir, Files: fileList, StatePath: *state, Metrics: metrics,
		RotationGrace: *grace, PersistInterval: *persist, IdleFlush: *idle, Sink: sink,
		Logger: slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level(*debug)})),
	})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	if err := t.Run(ctx); err != nil {
		fmt.Fprintln(os.Stderr, err)
		pprof.StopCPUProfile()
		os.Exit(1)
	}
	if *count {
		fmt.Println(n)
	}
	// The peak RSS of this process alone: the rusage a parent gets from
	// wait4 keeps the high-water mark of the forked parent's memory.
	if b, err := os.ReadFile("/proc/self/status"); err == nil {
		for _, l := range strings.Split(string(b), "\n") {
			if strings.HasPrefix(l, "VmHWM:") {
				fmt.Fprintln(os.Stderr, "peak", strings.TrimSpace(strings.TrimPrefix(l, "VmHWM:")))
			}
		}
	}
}

func level(debug bool) slog.Level {
	if debug {
		return slog.LevelDebug
	}
	return slog.LevelInfo
}
