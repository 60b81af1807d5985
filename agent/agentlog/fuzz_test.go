package agentlog

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
)

// FuzzClassify feeds any bytes to what `patchd agent-log classify` runs:
// it must not fail or panic, must print one row per physical line, and only
// known levels and kinds. Seeds: testdata/fuzz/FuzzClassify and every
// sample log.
func FuzzClassify(f *testing.F) {
	logs, _ := filepath.Glob("testdata/*/*.log")
	for _, p := range logs {
		if b, err := os.ReadFile(p); err == nil {
			f.Add(b)
		}
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		var out bytes.Buffer
		if err := ClassifyStream(bytes.NewReader(data), &out); err != nil {
			t.Fatal(err)
		}
		want := bytes.Count(data, []byte("\n"))
		if len(data) > 0 && data[len(data)-1] != '\n' {
			want++
		}
		rows := strings.Split(strings.TrimSuffix(out.String(), "\n"), "\n")
		if want == 0 {
			rows = nil
		}
		if len(rows) != want {
			t.Fatalf("%d rows for %d lines", len(rows), want)
		}
		for i, r := range rows {
			cols := strings.Split(r, "\t")
			if len(cols) != 3 || cols[0] != strconv.Itoa(i+1) {
				t.Fatalf("row %d: %q", i+1, r)
			}
			if cols[1] != "-" && !slices.Contains(levels[:], cols[1]) {
				t.Fatalf("row %d: level %q", i+1, cols[1])
			}
			if !slices.Contains(Kinds, Kind(cols[2])) {
				t.Fatalf("row %d: kind %q", i+1, cols[2])
			}
		}
		var tc stampCache
		for _, line := range bytes.Split(data, []byte("\n")) {
			l := ParseLine(line)
			if l.Level != "" && !slices.Contains(levels[:], l.Level) {
				t.Fatalf("ParseLine(%q) level %q", line, l.Level)
			}
			if c := parseLine(line, &tc); !c.Time.Equal(l.Time) || c.Level != l.Level || !bytes.Equal(c.Msg, l.Msg) {
				t.Fatalf("parseLine(%q) with the minute cached: %v %q %q, without: %v %q %q", line, c.Time, c.Level, c.Msg, l.Time, l.Level, l.Msg)
			}
			if err := checkScan(string(line)); err != nil {
				t.Fatal(err)
			}
		}
	})
}

// FuzzRestore starts a Tailer from any offsets file: it must not panic, and
// every file it opens must be positioned inside the file. In the input,
// DEV, INODE and OLDINODE stand for the real device and inodes of the log
// and of a rotated copy, so the fuzzer reaches the paths that match files.
// Seeds: testdata/fuzz/FuzzRestore.
func FuzzRestore(f *testing.F) {
	f.Add([]byte(`{"version":1,"files":[{"name":"amazon-ssm-agent.log","dev":DEV,"inode":INODE,"offset":40,"fingerprint_len":40,"fingerprint":"x"}]}`))
	f.Add([]byte(`{"version":1,"files":[{"name":"amazon-ssm-agent.log","rotated":true,"dev":DEV,"inode":OLDINODE,"offset":10,"fingerprint_len":0,"fingerprint":""},{"name":"amazon-ssm-agent.log","dev":DEV,"inode":INODE,"offset":1000,"fingerprint_len":0,"fingerprint":""}]}`))
	f.Add([]byte(`{"version":1,"files":[{"name":"errors.log","dev":0,"inode":0,"offset":0,"fingerprint_len":0,"fingerprint":""}]}`))
	f.Add([]byte(`{"version":1,"files":[{"name":"../x","dev":1,"inode":2,"offset":-1}]}`))
	f.Add([]byte(`not json`))
	f.Add([]byte(``))
	// With a journal mark: the journal below holds three records.
	f.Add([]byte(`{"version":1,"files":[{"name":"amazon-ssm-agent.log","dev":DEV,"inode":INODE,"offset":35,"fingerprint_len":105,"fingerprint":"x"}],"mark":1}`))
	f.Add([]byte(`{"version":1,"files":[{"name":"amazon-ssm-agent.log","rotated":true,"dev":DEV,"inode":OLDINODE,"offset":0,"fingerprint_len":0,"fingerprint":""},{"name":"amazon-ssm-agent.log","dev":DEV,"inode":INODE,"offset":0,"fingerprint_len":0,"fingerprint":""}],"mark":0}`))
	f.Add([]byte(`{"version":1,"files":[],"mark":7}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		dir := t.TempDir()
		logs := filepath.Join(dir, "logs")
		if err := os.Mkdir(logs, 0o755); err != nil {
			t.Fatal(err)
		}
		cur := filepath.Join(logs, agentLog)
		old := cur + ".1"
		content := []byte(line("a", 1) + "\n" + line("a", 2) + "\n" + line("a", 3) + "\n")
		for _, p := range []string{cur, old} {
			if err := os.WriteFile(p, content, 0o644); err != nil {
				t.Fatal(err)
			}
		}
		fi, _ := os.Stat(cur)
		ofi, _ := os.Stat(old)
		dev, ino := fileID(fi)
		_, oino := fileID(ofi)
		data = bytes.ReplaceAll(data, []byte("OLDINODE"), []byte(strconv.FormatUint(oino, 10)))
		data = bytes.ReplaceAll(data, []byte("INODE"), []byte(strconv.FormatUint(ino, 10)))
		data = bytes.ReplaceAll(data, []byte("DEV"), []byte(strconv.FormatUint(dev, 10)))
		state := filepath.Join(dir, StateFile)
		if err := os.WriteFile(state, data, 0o600); err != nil {
			t.Fatal(err)
		}
		// Records past any mark: of the log, of the rotated copy, and of
		// a file the offsets cannot name.
		j := newMemJournal()
		j.pos = []Position{{dev, ino, 35}, {dev, oino, 70}, {dev, ino + oino + 1, 5}}
		j.msgs = make([]string, len(j.pos))
		tl, err := New(Options{Dir: logs, Files: []string{agentLog, "errors.log"}, StatePath: state, Sink: func(Event) {}, Journal: j})
		if err != nil {
			t.Fatal(err)
		}
		if err := tl.restore(); err != nil {
			return // the journal could not recover: Run stops, as it should
		}
		open := map[[2]uint64]bool{}
		for _, fl := range tl.follow {
			for _, s := range append(fl.old, fl.cur) {
				if s == nil {
					continue
				}
				if open[[2]uint64{s.dev, s.ino}] {
					t.Errorf("%s (inode %d) opened twice", s.path, s.ino)
				}
				open[[2]uint64{s.dev, s.ino}] = true
				if s.off < 0 || s.off > int64(len(content)) {
					t.Errorf("%s opened at %d, size %d", s.path, s.off, len(content))
				}
				s.read(tl, -1)
				s.f.Close()
			}
		}
		// Whatever it started from, what it would write back must restore
		// (the state it writes is this snapshot, encoded the same way).
		b, err := json.MarshalIndent(tl.snapshot(), "", "  ")
		if err != nil {
			t.Fatal(err)
		}
		if _, err := parseState(b); err != nil {
			t.Fatalf("the offsets it would write do not parse: %v\n%s", err, b)
		}
	})
}

// checkScan compares scan with what it must return: every marker, searched
// for one by one, and the first place of each.
func checkScan(m string) error {
	var at positions
	got := scan(m, &at)
	var want found
	for id, p := range markers.pats {
		i := strings.Index(m, p)
		if i < 0 {
			continue
		}
		want[id/64] |= 1 << (id % 64)
		if got[id/64]&(1<<(id%64)) != 0 && int(at[id]) != i {
			return fmt.Errorf("scan(%q) puts %q at %d, substring search at %d", m, p, at[id], i)
		}
	}
	if got != want {
		return fmt.Errorf("scan(%q) = %v, substring search finds %v", m, got, want)
	}
	if scan(m, nil) != got {
		return fmt.Errorf("scan(%q) finds other markers without positions", m)
	}
	return nil
}
