// Command tailcmd runs one agentlog.Tailer in a process of its own, for the
// rotation torture test (which SIGKILLs it) and the ingest benchmark (which
// measures its peak RSS). It writes each event's message as one line to
// stdout, or only counts them with -count. With -out it first records each
// in a journal file (an agentlog.Journal): the torture test checks that file
// for every line exactly once across SIGKILLs.
package main

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"runtime/pprof"
	"strconv"
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
	stopAfter := flag.Int64("stop-after", -1, "exit once an event ends at or after this byte offset of its file")
	debug := flag.Bool("debug", false, "log at debug level")
	cpuProfile := flag.String("cpuprofile", "", "write a CPU profile here")
	outPath := flag.String("out", "", "journal file: each event's message, one per line, exactly once")
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
	var journal *fileJournal
	if *outPath != "" {
		var err error
		if journal, err = openJournal(*outPath); err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(2)
		}
		defer journal.f.Close()
	}
	var n int64
	// Unbuffered on purpose: a line is out of the process once Sink
	// returns, so a SIGKILL loses nothing already handed out.
	out := os.Stdout
	sink := func(e agentlog.Event) {
		n++
		if journal != nil {
			journal.add(e)
		}
		if !*count {
			fmt.Fprintln(out, e.Message)
		}
		if *stopAt != "" && strings.Contains(e.Message, *stopAt) {
			cancel()
		}
		// The benchmark stops by offset: a search of every message
		// would be the harness's cost, measured as the tailer's.
		if *stopAfter >= 0 && e.Pos.Offset >= *stopAfter {
			cancel()
		}
	}
	// Metrics as the daemon keeps them, so that their cost is measured.
	fileList := strings.Split(*files, ",")
	metrics := agentlog.NewMetrics(prometheus.NewRegistry(), fileList)
	opts := agentlog.Options{
		Dir: *dir, Files: fileList, StatePath: *state, Metrics: metrics,
		RotationGrace: *grace, PersistInterval: *persist, IdleFlush: *idle, Sink: sink,
		Logger: slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level(*debug)})),
	}
	if journal != nil {
		opts.Journal = journal
	}
	t, err := agentlog.New(opts)
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

// fileJournal is an append-only file of events, one line each:
// "<dev>:<inode>:<offset> <message>". Each line is one write(2), unbuffered:
// once written it survives a SIGKILL of this process, and the restart moves
// the offsets past it instead of handing its entry out again.
type fileJournal struct {
	f   *os.File
	n   int64 // the file's length
	buf []byte
	err error // the first write error; Mark reports it
}

func openJournal(path string) (*fileJournal, error) {
	f, err := os.OpenFile(path, os.O_RDWR|os.O_APPEND|os.O_CREATE, 0o644)
	if err != nil {
		return nil, err
	}
	fi, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, err
	}
	return &fileJournal{f: f, n: fi.Size()}, nil
}

func (j *fileJournal) add(e agentlog.Event) {
	if j.err != nil {
		return
	}
	b := strconv.AppendUint(j.buf[:0], e.Pos.Dev, 10)
	b = append(b, ':')
	b = strconv.AppendUint(b, e.Pos.Inode, 10)
	b = append(b, ':')
	b = strconv.AppendInt(b, e.Pos.Offset, 10)
	b = append(b, ' ')
	b = append(b, e.Message...)
	b = append(b, '\n')
	j.buf = b
	n, err := j.f.Write(b)
	j.n += int64(n)
	if err != nil {
		j.err = fmt.Errorf("journal %s: %w", j.f.Name(), err)
	}
}

// Mark syncs: the offsets written next must never describe records a power
// loss could take from the file.
func (j *fileJournal) Mark() (int64, error) {
	if j.err != nil {
		return 0, j.err
	}
	if err := j.f.Sync(); err != nil {
		return 0, fmt.Errorf("journal %s: %w", j.f.Name(), err)
	}
	return j.n, nil
}

// Recover reads the records after mark and cuts off a last one without its
// newline (a write torn by a crash).
func (j *fileJournal) Recover(mark int64) ([]agentlog.Position, error) {
	data, err := os.ReadFile(j.f.Name())
	if err != nil {
		return nil, err
	}
	if int64(len(data)) < mark {
		return nil, fmt.Errorf("journal %s holds %d bytes but the offsets go with %d: records marked durable are gone", j.f.Name(), len(data), mark)
	}
	var pos []agentlog.Position
	rest, at := data[mark:], mark
	for len(rest) > 0 {
		nl := bytes.IndexByte(rest, '\n')
		if nl < 0 {
			if err := j.f.Truncate(at); err != nil {
				return nil, err
			}
			j.n = at
			break
		}
		head, _, _ := bytes.Cut(rest[:nl], []byte(" "))
		f := strings.Split(string(head), ":")
		if len(f) != 3 {
			return nil, fmt.Errorf("journal %s: record at byte %d has no position", j.f.Name(), at)
		}
		dev, err1 := strconv.ParseUint(f[0], 10, 64)
		ino, err2 := strconv.ParseUint(f[1], 10, 64)
		off, err3 := strconv.ParseInt(f[2], 10, 64)
		if err := errors.Join(err1, err2, err3); err != nil {
			return nil, fmt.Errorf("journal %s: record at byte %d: %w", j.f.Name(), at, err)
		}
		pos = append(pos, agentlog.Position{Dev: dev, Inode: ino, Offset: off})
		rest, at = rest[nl+1:], at+int64(nl)+1
	}
	return pos, nil
}
