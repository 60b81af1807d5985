package agentlog

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// benchLines is a day of an ordinary agent log: mostly "other" chatter
// with a health report, a command and a credential error now and then.
var benchLines = []string{
	"2024-10-21 10:00:%02d.%04d INFO [ssm-agent-worker] [MessageService] [MGSInteractor] [%d] listening reply.",
	"2024-10-21 10:00:%02d.%04d INFO [ssm-agent-worker] [HealthCheck] HealthCheck reporting agent health. %d",
	"2024-10-21 10:00:%02d.%04d INFO [ssm-agent-worker] [MessageService] [EngineProcessor] [OutOfProcExecuter] [6f7e2a4b-3c1d-4e5f-9a8b-7c6d5e4f3a2b] document 6f7e2a4b-3c1d-4e5f-9a8b-%012d submission started",
	"2024-10-21 10:00:%02d.%04d INFO [ssm-agent-worker] [MessageService] [MessageHandler] [CommandWorkerProcessorWrapper] command: aws.ssm.6f7e2a4b-3c1d-4e5f-9a8b-%012d.i-0123456789abcdef0 complete",
	"2024-10-21 10:00:%02d.%04d DEBUG [ssm-agent-worker] [MessageService] [MGSInteractor] Processing AgentJobAcknowledge %d",
	"2024-10-21 10:00:%02d.%04d INFO [amazon-ssm-agent] [CredentialRefresher] Sleeping for 28m47s before retrying retrieve credentials %d",
	"2024-10-21 10:00:%02d.%04d WARN [ssm-agent-worker] [MessageService] [MGSInteractor] [%d] Failed to send message: RequestError: send request failed",
	"2024-10-21 10:00:%02d.%04d INFO [ssm-agent-worker] [LongRunningPluginsManager] There are no long running plugins currently getting executed - skipping their healthcheck %d",
	"	status code: 400, request id: %02d%04d-%d",
}

// genLog writes about size bytes of agent log and returns the line count.
func genLog(w *bytes.Buffer, size int) int {
	n := 0
	for i := 0; w.Len() < size; i++ {
		fmt.Fprintf(w, benchLines[i%len(benchLines)]+"\n", i%60, i%10000, i)
		n++
	}
	return n
}

// BenchmarkClassifier is the parser and classifier alone on typical lines.
func BenchmarkClassifier(b *testing.B) {
	var buf bytes.Buffer
	genLog(&buf, 4<<20)
	data := buf.Bytes()
	b.SetBytes(int64(len(data)))
	b.ReportAllocs()
	events := 0
	c := Classifier{Emit: func(Entry) { events++ }}
	s := splitter{line: func(l []byte, start, end int64, _ bool) { c.Feed(l, start, end) }}
	for b.Loop() {
		s.push(data, 0)
		c.Flush()
	}
	if events == 0 {
		b.Fatal("no events")
	}
}

// TestIngestVsWc is the benchmark `make bench-agentlog` runs (it sets
// PATCHD_AGENTLOG_BENCH_MB, 1024 there): a generated agent log ingested
// through a tailer process (tailcmd) against `wc -l` on the same file in the
// same run, page cache warm for both; and the tailer's peak RSS, which must
// not grow with the file.
func TestIngestVsWc(t *testing.T) {
	mb, _ := strconv.Atoi(os.Getenv("PATCHD_AGENTLOG_BENCH_MB"))
	if mb <= 0 {
		t.Skip("set PATCHD_AGENTLOG_BENCH_MB (make bench-agentlog)")
	}
	dir := t.TempDir()
	logs := filepath.Join(dir, "logs")
	if err := os.Mkdir(logs, 0o755); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(logs, agentLog)
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	var lines int
	var buf bytes.Buffer
	for written := 0; written < mb<<20; {
		buf.Reset()
		lines += genLog(&buf, 8<<20)
		if _, err := f.Write(buf.Bytes()); err != nil {
			t.Fatal(err)
		}
		written += buf.Len()
	}
	// The tailer stops at the end of the last entry; one more line
	// completes it. By offset, not by a search for its text in every
	// message: that search is no work of the daemon's.
	fmt.Fprintf(f, "2024-10-21 23:59:59.0000 INFO END-OF-BENCH\n2024-10-21 23:59:59.0001 INFO after\n")
	lines += 2
	f.Close()
	fi, _ := os.Stat(path)
	size := fi.Size()
	stopAfter := size - int64(len("2024-10-21 23:59:59.0001 INFO after\n"))

	wc := func() (time.Duration, time.Duration) {
		cmd := exec.Command("wc", "-l", path)
		start := time.Now()
		out, err := cmd.Output()
		if err != nil {
			t.Fatal(err)
		}
		took := time.Since(start)
		if n, _ := strconv.Atoi(strings.Fields(string(out))[0]); n != lines {
			t.Fatalf("wc -l counted %d lines, %d written", n, lines)
		}
		return took, cpu(cmd.ProcessState)
	}
	wc() // warms the page cache for both
	wcTook, wcCPU := wc()

	state := filepath.Join(dir, StateFile)
	// "The file did not exist at the last stop": read it all from the start.
	if err := os.WriteFile(state, []byte(`{"version":1,"files":[{"name":"amazon-ssm-agent.log","dev":0,"inode":0,"offset":0,"fingerprint_len":0,"fingerprint":""}]}`), 0o600); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(tailBin, "-dir", logs, "-state", state, "-count", "-stop-after", strconv.FormatInt(stopAfter, 10))
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	start := time.Now()
	out, err := cmd.Output()
	tailTook := time.Since(start)
	if err != nil {
		t.Fatalf("tailcmd: %v\n%s", err, stderr.String())
	}
	events, _ := strconv.Atoi(strings.TrimSpace(string(out)))
	// Continuation lines are part of their entry: every ninth line is one.
	if events < lines*8/9-2 || events > lines {
		t.Fatalf("%d events for %d lines", events, lines)
	}
	var rss int // KiB, from tailcmd's own VmHWM
	for _, l := range strings.Split(stderr.String(), "\n") {
		if f := strings.Fields(l); len(f) == 3 && f[0] == "peak" {
			rss, _ = strconv.Atoi(f[1])
		}
	}
	if rss == 0 {
		t.Fatalf("tailcmd reported no peak RSS:\n%s", stderr.String())
	}
	tailCPU := cpu(cmd.ProcessState)
	mbps := func(d time.Duration) float64 { return float64(size) / (1 << 20) / d.Seconds() }
	report := fmt.Sprintf("file %d MiB, %d lines (page cache warm)\n"+
		"wc -l:  wall %v (%.0f MiB/s), cpu %v\n"+
		"tailer: wall %v (%.0f MiB/s), cpu %v, %d events, peak RSS %.1f MiB\n"+
		"ratio of wc -l: %.2f by wall time, %.2f by cpu time\n",
		size>>20, lines,
		wcTook.Round(time.Millisecond), mbps(wcTook), wcCPU.Round(time.Millisecond),
		tailTook.Round(time.Millisecond), mbps(tailTook), tailCPU.Round(time.Millisecond), events, float64(rss)/1024,
		wcTook.Seconds()/tailTook.Seconds(), wcCPU.Seconds()/tailCPU.Seconds())
	t.Log("\n" + report)
	if out := os.Getenv("PATCHD_AGENTLOG_BENCH_OUT"); out != "" {
		if err := os.WriteFile(out, []byte(report), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	// The 0.1 target is reported, not enforced: the ratio depends on how
	// loaded the machine is, and BENCHMARKS.md records the numbers.
	if ratio := wcCPU.Seconds() / tailCPU.Seconds(); ratio < 0.1 {
		t.Logf("BELOW TARGET: ingest at %.2f of wc -l by cpu time (target 0.1)", ratio)
	}
}

// cpu is the user and system time a finished process used.
func cpu(ps *os.ProcessState) time.Duration { return ps.UserTime() + ps.SystemTime() }

// BenchmarkScan is the marker scan alone on the messages of the benchmark
// log.
func BenchmarkScan(b *testing.B) {
	var buf bytes.Buffer
	genLog(&buf, 1<<20)
	var msgs []string
	for _, l := range strings.Split(strings.TrimSuffix(buf.String(), "\n"), "\n") {
		msgs = append(msgs, string(ParseLine([]byte(l)).Msg))
	}
	b.SetBytes(int64(buf.Len()))
	var n int
	var at positions
	for b.Loop() {
		for _, m := range msgs {
			if scan(m, &at) != (found{}) {
				n++
			}
		}
	}
	if n == 0 {
		b.Fatal("no markers")
	}
}
