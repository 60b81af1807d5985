package agentlog

import (
	"bufio"
	"bytes"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"
)

// classifyLines runs the Classifier over data and returns, per physical
// line, "<level>\t<kind>", as `patchd agent-log classify` prints it.
func classifyLines(data []byte) []string {
	var out []string
	c := Classifier{Emit: func(e Entry) {
		out = append(out, e.Level+"\t"+string(e.Kind))
		for i := 1; i < e.Lines; i++ {
			out = append(out, "-\t"+string(e.Kind))
		}
	}}
	var off int64
	for len(data) > 0 {
		line := data
		n := len(data)
		if i := bytes.IndexByte(data, '\n'); i >= 0 {
			line, n = data[:i], i+1
		}
		c.Feed(line, off, off+int64(n))
		off += int64(n)
		data = data[n:]
	}
	c.Flush()
	return out
}

// TestSamples checks every sample log against its .expected.tsv: the real
// excerpts under testdata/ssm-real and the lines taken from the agent's
// source under testdata/source (testdata/README.md names each source).
func TestSamples(t *testing.T) {
	logs, err := filepath.Glob("testdata/*/*.log")
	if err != nil || len(logs) < 9 {
		t.Fatalf("expected at least 9 sample logs, found %d (%v)", len(logs), err)
	}
	for _, path := range logs {
		t.Run(filepath.Base(path), func(t *testing.T) {
			data, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			want := readExpected(t, path+".expected.tsv")
			got := classifyLines(data)
			if len(got) != len(want) {
				t.Fatalf("%d lines classified, %s has %d", len(got), path+".expected.tsv", len(want))
			}
			for i := range want {
				if got[i] != want[i] {
					t.Errorf("line %d: got %q, want %q", i+1, got[i], want[i])
				}
			}
		})
	}
}

func readExpected(t *testing.T, path string) []string {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var want []string
	sc := bufio.NewScanner(f)
	for n := 0; sc.Scan(); n++ {
		if n == 0 {
			continue // header
		}
		cols := strings.Split(sc.Text(), "\t")
		if len(cols) < 3 || cols[0] != fmt.Sprint(n) {
			t.Fatalf("%s:%d: malformed row %q", path, n+1, sc.Text())
		}
		want = append(want, cols[1]+"\t"+cols[2])
	}
	return want
}

func TestParseLine(t *testing.T) {
	for _, tc := range []struct {
		in, level, msg, src, prog string
		time                      time.Time
	}{
		{in: "2024-10-21 10:00:00.1234 INFO [amazon-ssm-agent] Starting Core Agent", level: "INFO",
			msg: "[amazon-ssm-agent] Starting Core Agent", time: time.Date(2024, 10, 21, 10, 0, 0, 123400000, time.Local)},
		{in: "2021-01-08 08:40:20 WARN EC2RoleProvider x", level: "WARN", msg: "EC2RoleProvider x",
			time: time.Date(2021, 1, 8, 8, 40, 20, 0, time.Local)},
		{in: "2021-01-08 08:40:20 CRITICAL", level: "CRITICAL", msg: "", time: time.Date(2021, 1, 8, 8, 40, 20, 0, time.Local)},
		{in: "2024-10-21 10:06:00.0000 ERROR [Retrieve @ credentialrefresher.go.218] boom", level: "ERROR",
			msg: "boom", src: "Retrieve @ credentialrefresher.go.218", time: time.Date(2024, 10, 21, 10, 6, 0, 0, time.Local)},
		{in: "2024-10-21 10:06:00.0000 ERROR [amazon-ssm-agent] [X] not a source", level: "ERROR",
			msg: "[amazon-ssm-agent] [X] not a source", time: time.Date(2024, 10, 21, 10, 6, 0, 0, time.Local)},
		{in: "Oct  2 10:00:02 host amazon-ssm-agent[99]: 2024-10-02 10:00:02 DEBUG m", level: "DEBUG", msg: "m",
			prog: "amazon-ssm-agent", time: time.Date(2024, 10, 2, 10, 0, 2, 0, time.Local)},
		{in: "2024-10-21T10:00:04.5+02:00 host systemd[1]: Stopped x.", msg: "Stopped x.", prog: "systemd"},
		{in: "2024-10-21 10:00:00.1234 NOTICE x", msg: "2024-10-21 10:00:00.1234 NOTICE x"},
		{in: "2024-13-21 10:00:00 INFO bad month", msg: "2024-13-21 10:00:00 INFO bad month"},
		{in: "2024-10-21 10:00:00. INFO no fraction digits", msg: "2024-10-21 10:00:00. INFO no fraction digits"},
		{in: "INFORMATION is not a level", msg: "INFORMATION is not a level"},
		{in: "TRACE x\r", level: "TRACE", msg: "x"},
		{in: "\tstatus code: 400, request id: x", msg: "\tstatus code: 400, request id: x"},
		{in: "", msg: ""},
	} {
		l := ParseLine([]byte(tc.in))
		if l.Level != tc.level || string(l.Msg) != tc.msg || string(l.Source) != tc.src || string(l.Program) != tc.prog || !l.Time.Equal(tc.time) {
			t.Errorf("ParseLine(%q) = level %q msg %q src %q prog %q time %v; want %q %q %q %q %v",
				tc.in, l.Level, l.Msg, l.Source, l.Program, l.Time, tc.level, tc.msg, tc.src, tc.prog, tc.time)
		}
	}
}

// TestStampCache: a line read with the minute cached has the time, level
// and message it has without the cache, whatever came before it.
func TestStampCache(t *testing.T) {
	lines := []string{
		"2024-10-21 10:00:01.5 INFO a",
		"2024-10-21 10:00:59.9999 INFO same minute",
		"2024-10-21 10:00:60 INFO leap second",
		"2024-10-21 10:00:61 INFO no such second",
		"2024-10-21 10:00:0x INFO not a second",
		"2024-10-21 10:00:07. INFO no fraction digits",
		"2024-10-21 10:00:07.1INFO no space",
		"2024-10-21 10:00:07 NOTICE not a level",
		"2024-10-21 10:01:00 INFO next minute",
		"2024-10-21 10:00:02 INFO back a minute",
		"2024-10-21 10:0a:02 INFO bad minute",
		"2024-10-21 10:00:03 WARN again",
		"2024-10-21T10:00:03 INFO not this format",
		"2024-03-10 02:30:00 INFO maybe a missing hour",
		"2024-11-03 01:30:00 INFO maybe a repeated hour",
		"2024-11-03 01:30:30 INFO and again",
	}
	var tc stampCache
	for _, in := range lines {
		got, want := parseLine([]byte(in), &tc), ParseLine([]byte(in))
		if !got.Time.Equal(want.Time) || got.Level != want.Level || string(got.Msg) != string(want.Msg) {
			t.Errorf("%q: with the cache %v %q %q, without %v %q %q", in, got.Time, got.Level, got.Msg, want.Time, want.Level, want.Msg)
		}
	}
}

func TestExtract(t *testing.T) {
	for _, tc := range []struct {
		in                      string
		version, command, docID string
		backoff                 time.Duration
	}{
		{in: "2021-01-08 08:40:20 INFO [amazon-ssm-agent] Starting Core Agent: amazon-ssm-agent - v3.0.161.0", version: "3.0.161.0"},
		{in: "2021-01-08 08:40:22 INFO [ssm-agent-worker] [StartupProcessor] Write to serial port: Amazon SSM Agent v3.0.161.0 is running", version: "3.0.161.0"},
		{in: "2024-10-21 10:06:00 INFO [amazon-ssm-agent] [CredentialRefresher] Sleeping for 28m47.123s before retrying retrieve credentials", backoff: 28*time.Minute + 47123*time.Millisecond},
		{in: "2024-10-21 10:06:00 INFO Sleeping for junk before retrying retrieve credentials"},
		{in: "2024-10-21 10:02:00 INFO command: aws.ssm.6f7e2a4b-3c1d-4e5f-9a8b-7c6d5e4f3a2b.i-0123456789abcdef0 complete", command: "6f7e2a4b-3c1d-4e5f-9a8b-7c6d5e4f3a2b"},
		{in: "2024-10-21 10:01:00 INFO [ssm-document-worker] [6f7e2a4b-3c1d-4e5f-9a8b-7c6d5e4f3a2b] document worker closed", docID: "6f7e2a4b-3c1d-4e5f-9a8b-7c6d5e4f3a2b"},
		{in: "2024-10-21 10:05:00 INFO Found in-progress document - aws.ssm.0a1b.i-01", command: "0a1b", docID: "aws.ssm.0a1b.i-01"},
		{in: "2024-10-21 10:05:00 INFO [ssm-agent-worker] document 1111-2222 submission started", docID: "1111-2222"},
	} {
		var got []Entry
		c := Classifier{Emit: func(e Entry) { got = append(got, e.Clone()) }}
		c.Feed([]byte(tc.in), 0, int64(len(tc.in))+1)
		c.Flush()
		if len(got) != 1 {
			t.Fatalf("%q: %d entries", tc.in, len(got))
		}
		e := got[0]
		if e.AgentVersion != tc.version || e.CommandID != tc.command || e.DocumentID != tc.docID || e.Backoff != tc.backoff {
			t.Errorf("%q: version %q command %q doc %q backoff %v; want %q %q %q %v",
				tc.in, e.AgentVersion, e.CommandID, e.DocumentID, e.Backoff, tc.version, tc.command, tc.docID, tc.backoff)
		}
	}
}

// TestCloneOutlivesTheBuffer: an event's strings view the Classifier's
// buffer, which the next entry overwrites; a Clone kept from the Emit call
// keeps the message and ids it had there.
func TestCloneOutlivesTheBuffer(t *testing.T) {
	lines := []string{
		"2024-10-21 10:00:00 INFO [amazon-ssm-agent] Starting Core Agent: amazon-ssm-agent - v3.3.1142.0",
		"2024-10-21 10:00:01 INFO command: aws.ssm.6f7e2a4b-3c1d-4e5f-9a8b-7c6d5e4f3a2b.i-0123456789abcdef0 complete",
		"2024-10-21 10:00:02 INFO [ssm-document-worker] [0a1b2c3d-4e5f-6a7b-8c9d-0e1f2a3b4c5d] document worker closed",
		"2024-10-21 10:00:03 INFO " + strings.Repeat("x", 120),
		"2024-10-21 10:00:04 INFO " + strings.Repeat("y", 120),
	}
	var kept, inCall []Event
	c := Classifier{Emit: func(e Entry) {
		inCall = append(inCall, Event{Message: strings.Clone(e.Message), AgentVersion: strings.Clone(e.AgentVersion),
			CommandID: strings.Clone(e.CommandID), DocumentID: strings.Clone(e.DocumentID)})
		kept = append(kept, e.Event.Clone())
	}}
	for i, l := range lines {
		c.Feed([]byte(l), int64(i*200), int64(i*200+len(l)+1))
	}
	c.Flush()
	if len(kept) != len(lines) {
		t.Fatalf("%d entries for %d lines", len(kept), len(lines))
	}
	for i, e := range kept {
		if e.Message != inCall[i].Message || e.AgentVersion != inCall[i].AgentVersion ||
			e.CommandID != inCall[i].CommandID || e.DocumentID != inCall[i].DocumentID {
			t.Errorf("entry %d kept as %+v, was %+v in the call", i, e, inCall[i])
		}
	}
	if kept[0].AgentVersion != "3.3.1142.0" || kept[1].CommandID != "6f7e2a4b-3c1d-4e5f-9a8b-7c6d5e4f3a2b" ||
		kept[2].DocumentID != "0a1b2c3d-4e5f-6a7b-8c9d-0e1f2a3b4c5d" {
		t.Errorf("ids kept: %q %q %q", kept[0].AgentVersion, kept[1].CommandID, kept[2].DocumentID)
	}
}

// TestClone: the copy equals the original, and ids that are not part of
// the message (an event built by hand) are copied too.
func TestClone(t *testing.T) {
	for _, e := range []Event{
		{},
		{Kind: Reboot, CommandID: "c6"},
		{Message: "m", DocumentID: "d", AgentVersion: "1.2"},
		{Message: "amazon-ssm-agent - v3.3.1142.0", AgentVersion: "3.3.1142.0"},
	} {
		if got := e.Clone(); got != e {
			t.Errorf("Clone(%+v) = %+v", e, got)
		}
	}
	msg := []byte("document 1111-2222 submission started")
	e := Event{Message: view(msg), DocumentID: view(msg[9:18])}
	c := e.Clone()
	copy(msg, strings.Repeat("z", len(msg)))
	if c.Message != "document 1111-2222 submission started" || c.DocumentID != "1111-2222" {
		t.Errorf("clone changed with the buffer: %+v", c)
	}
}

// TestClassifierOffsets checks what the tailer relies on: an open entry
// reports where it starts, and continuation lines after a flush are a tail,
// not a new event.
func TestClassifierOffsets(t *testing.T) {
	var got []Entry
	c := Classifier{File: "amazon-ssm-agent.log", Emit: func(e Entry) { got = append(got, e.Clone()) }}
	c.Feed([]byte("2024-10-21 10:00:00 ERROR Retrieve credentials produced error: x"), 0, 60)
	if s, ok := c.Pending(); !ok || s != 0 {
		t.Fatalf("Pending() = %d, %v; want 0, true", s, ok)
	}
	c.Feed([]byte("caused by: dial tcp 1.2.3.4:443: i/o timeout"), 60, 100)
	c.Flush()
	if _, ok := c.Pending(); ok {
		t.Fatal("pending after Flush")
	}
	c.Feed([]byte("  late continuation"), 100, 120)
	if len(got) != 2 {
		t.Fatalf("%d entries, want 2", len(got))
	}
	if e := got[0]; e.Kind != NetworkError || e.Lines != 2 || e.Start != 0 || e.End != 100 || e.File != "amazon-ssm-agent.log" || e.Tail {
		t.Errorf("first entry %+v", e)
	}
	if e := got[1]; !e.Tail || e.Kind != NetworkError || e.Level != "-" || e.FirstLine != 3 {
		t.Errorf("tail entry %+v", e)
	}
}

// TestClassifyStream is what `patchd agent-log classify` prints, on every
// sample and on input without a final newline, with CRLF, NULs and an
// over-long line.
func TestClassifyStream(t *testing.T) {
	logs, _ := filepath.Glob("testdata/*/*.log")
	for _, path := range logs {
		data, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		var out bytes.Buffer
		if err := ClassifyStream(bytes.NewReader(data), &out); err != nil {
			t.Fatal(err)
		}
		var want strings.Builder
		for i, row := range readExpected(t, path+".expected.tsv") {
			fmt.Fprintf(&want, "%d\t%s\n", i+1, row)
		}
		if out.String() != want.String() {
			t.Errorf("%s:\ngot\n%swant\n%s", path, out.String(), want.String())
		}
	}
	junk := "2024-10-21 10:00:00 ERROR x: dial tcp\r\n\x00\xff\xfe\n" + strings.Repeat("z", 3*MaxLine) + "\n2024-10-21 10:00:01 INFO Bye."
	var out bytes.Buffer
	if err := ClassifyStream(strings.NewReader(junk), &out); err != nil {
		t.Fatal(err)
	}
	want := "1\tERROR\tnetwork_error\n2\t-\tnetwork_error\n3\t-\tnetwork_error\n4\tINFO\tagent_stop\n"
	if out.String() != want {
		t.Errorf("junk:\ngot\n%swant\n%s", out.String(), want)
	}
}

// TestScanMatchesSubstringSearch: the one-pass, every-fifth-position scan
// finds exactly the markers a search for each would, wherever they sit, and
// the first place of each.
func TestScanMatchesSubstringSearch(t *testing.T) {
	var lines []string
	logs, _ := filepath.Glob("testdata/*/*.log")
	for _, p := range logs {
		b, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		lines = append(lines, strings.Split(string(b), "\n")...)
	}
	for _, p := range markers.pats {
		for pad := 0; pad < stride+1; pad++ { // every alignment to the stride
			x := strings.Repeat("x", pad)
			lines = append(lines, x+p, strings.Repeat(".", pad)+p+"y", p[:len(p)-1], x+p+x+p, p[:min(pad, len(p))]+p+p)
		}
	}
	for _, l := range lines {
		if err := checkScan(l); err != nil {
			t.Error(err)
		}
	}
}

// TestSlots: the switches the metrics index their series by follow Kinds
// and levels.
func TestSlots(t *testing.T) {
	for i, k := range Kinds {
		if got := kindSlot(k); got != i {
			t.Errorf("kindSlot(%q) = %d, want %d", k, got, i)
		}
	}
	for i, lv := range levels {
		if got := levelIndex(lv); got != i {
			t.Errorf("levelIndex(%q) = %d, want %d", lv, got, i)
		}
	}
	if kindSlot("nope") != -1 || levelIndex("-") != len(levels) {
		t.Error("unknown kind or level has a slot")
	}
}

// TestScanEveryOffset: the scan, which starts after a process tag and looks
// at every fifth position, finds what a substring search for each marker
// finds in agent-like lines with a marker put at every offset: inside and
// right after the tags, across them, at the end, and next to another
// marker.
func TestScanEveryOffset(t *testing.T) {
	bases := []string{
		"[ssm-agent-worker] [MessageService] [MGSInteractor] [1234] listening reply.",
		"[amazon-ssm-agent] [CredentialRefresher] Sleeping for 28m47s before",
		"[ssm-agent-worker]",
		"[amazon-ssm-agent]x",
		"plain text without a tag, of some length to put markers into",
		"",
	}
	n := 0
	for _, base := range bases {
		for id, p := range markers.pats {
			q := markers.pats[(id*7+3)%len(markers.pats)] // another marker, to sit beside p
			for off := 0; off <= len(base); off++ {
				for _, l := range []string{
					base[:off] + p + base[off:],                        // inserted
					base[:off] + p,                                     // at the end
					base[:off] + p + q + base[off:],                    // two in a row
					base[:off] + p[:len(p)-1] + p + base[off:],         // a near miss first
					base[:off] + p + base[min(off+len(p), len(base)):], // over the base's bytes
				} {
					if err := checkScan(l); err != nil {
						t.Fatal(err)
					}
					n++
				}
			}
		}
	}
	t.Logf("%d lines", n)
}

// TestScanOverlaps: a marker found lets the scan resume after its
// clearance; every other marker that begins inside it, or that overlaps
// its end, is still found where a substring search finds it.
func TestScanOverlaps(t *testing.T) {
	n := 0
	for _, p := range markers.pats {
		for _, q := range markers.pats {
			for k := 1; k < len(p); k++ {
				for _, l := range []string{
					p[:k] + q,                     // q from inside p
					p + q[min(len(p)-k, len(q)):], // q overlapping p's end where the bytes agree
					"[ssm-agent-worker] x" + p[:k] + q + " y",
				} {
					if err := checkScan(l); err != nil {
						t.Fatal(err)
					}
					n++
				}
			}
		}
	}
	t.Logf("%d lines", n)
}

// TestScanSkipsTags: both process tags are skipped (a marker that began
// inside one would stop that, silently, and cost a fifth of the scan), and
// skippable refuses a tag a marker can begin in.
func TestScanSkipsTags(t *testing.T) {
	var got []string
	for _, w := range table().tags {
		got = append(got, w.tag)
	}
	if !slices.Equal(got, processTags) {
		t.Errorf("the scan skips %q, want %q", got, processTags)
	}
	for _, tag := range []string{"[ssm-session-worker]", "[ssm-document-worker]", "[x] is", "[Bye.]"} {
		if skippable(tag, markers.pats) {
			t.Errorf("%q is skippable, but a marker can begin in it", tag)
		}
	}
}

// TestStampFraction: a fraction of any length is its first nine digits
// in nanoseconds, the rest ignored.
func TestStampFraction(t *testing.T) {
	digits := "123456789012"
	for k := 1; k <= len(digits); k++ {
		frac := digits[:k]
		want, _ := strconv.Atoi((frac + "000000000")[:9])
		for _, tc := range []*stampCache{nil, {}} {
			for range 2 { // the second time from the cache
				got, n, ok := parseStamp([]byte("2024-10-21 10:00:07."+frac+" INFO x"), tc)
				if !ok || n != 21+k || got.Nanosecond() != want || got.Second() != 7 {
					t.Errorf("fraction %q: %v, %d, %v; want ns %d", frac, got, n, ok, want)
				}
			}
		}
	}
}

// TestStampCacheExact: a time read from the cached minute is the very
// value time.Date gives (==, not only Equal: location and all), for every
// second of a minute and fractions of every length.
func TestStampCacheExact(t *testing.T) {
	var tc stampCache
	for _, day := range []string{"2024-10-21 10:00", "1999-12-31 23:59", "2038-01-19 03:14"} {
		for sec := range 60 {
			for _, frac := range []string{"", ".5", ".0001", ".123456789", ".9999999999"} {
				line := fmt.Sprintf("%s:%02d%s INFO x", day, sec, frac)
				for range 2 { // the second time from the cache
					got, _, ok := parseStamp([]byte(line), &tc)
					y, _ := strconv.Atoi(day[:4])
					mo, _ := strconv.Atoi(day[5:7])
					d, _ := strconv.Atoi(day[8:10])
					h, _ := strconv.Atoi(day[11:13])
					mi, _ := strconv.Atoi(day[14:16])
					ns := 0
					if frac != "" {
						ns, _ = strconv.Atoi((frac[1:] + "000000000")[:9])
					}
					if want := time.Date(y, time.Month(mo), d, h, mi, sec, ns, time.Local); !ok || got != want {
						t.Fatalf("parseStamp(%q) = %#v, want %#v", line, got, want)
					}
				}
			}
		}
	}
}

// TestParseLevel: every level is read, with a space, a tab or nothing
// after it, and nothing near one is.
func TestParseLevel(t *testing.T) {
	for _, lv := range levels {
		for _, after := range []string{" x", "\tx", ""} {
			if got, n, ok := parseLevel([]byte(lv + after)); !ok || got != lv || n != len(lv)+min(len(after), 1) {
				t.Errorf("parseLevel(%q) = %q, %d, %v", lv+after, got, n, ok)
			}
		}
		for _, bad := range []string{lv[:len(lv)-1], lv[:len(lv)-1] + " x", lv + "x", strings.ToLower(lv) + " x"} {
			if got, _, ok := parseLevel([]byte(bad)); ok {
				t.Errorf("parseLevel(%q) = %q", bad, got)
			}
		}
	}
}

// TestFeedSetsEveryField: Feed sets an entry's fields one by one, so a
// field added to Entry or Event must be added there too; and an entry with
// every fact leaves none of them to the next.
func TestFeedSetsEveryField(t *testing.T) {
	if n, m := reflect.TypeFor[Entry]().NumField(), reflect.TypeFor[Event]().NumField(); n != 6 || m != 10 {
		t.Fatalf("Entry has %d fields, Event %d: set the new ones in Classifier.Feed, then update this test", n, m)
	}
	var got []Entry
	c := Classifier{File: "f", Emit: func(e Entry) { got = append(got, e.Clone()) }}
	c.Feed([]byte("2024-10-21 10:00:01 INFO [amazon-ssm-agent] Sleeping for 5m0s before retrying retrieve credentials"), 0, 10)
	c.Feed([]byte("2024-10-21 10:00:02 INFO [ssm-document-worker] [d-1] command: aws.ssm.c-1.i-1 amazon-ssm-agent - v3.3.1.0"), 10, 20)
	c.Feed([]byte("2024-10-21 10:00:03 WARN plain"), 20, 30)
	c.Flush()
	want := Entry{
		Event:     Event{Time: time.Date(2024, 10, 21, 10, 0, 3, 0, time.Local), File: "f", Level: "WARN", Kind: Other, Message: "plain"},
		FirstLine: 3, Lines: 1, Start: 20, End: 30,
	}
	if len(got) != 3 || got[0].Backoff == 0 || got[1].CommandID == "" || got[1].DocumentID == "" || got[1].AgentVersion == "" {
		t.Fatalf("the first entries lack their facts: %+v", got)
	}
	if !reflect.DeepEqual(got[2], want) {
		t.Errorf("third entry\n%+v\nwant\n%+v", got[2], want)
	}
}

// TestTokenWords: token, which tests eight bytes at a time, cuts where a
// byte-by-byte walk does, for stops at every place of a word, none, and
// bytes with the high bit set (which the word test must not take for a
// stop).
func TestTokenWords(t *testing.T) {
	walk := func(b string, stop byte) string {
		n := 0
		for n < len(b) && n < 128 && !tokenEnds[b[n]] && b[n] != stop {
			n++
		}
		return b[:n]
	}
	r := rand.New(rand.NewPCG(1, 2))
	special := []byte(" ,].\x00\x01\x7f\x80\xff")
	for range 200000 {
		b := make([]byte, r.IntN(150))
		for j := range b {
			if r.IntN(24) == 0 {
				b[j] = special[r.IntN(len(special))]
			} else {
				b[j] = byte(r.IntN(256))
			}
		}
		for _, stop := range []byte{'.', ' ', 0, 0x80, 0xff} {
			if got, want := token(string(b), stop), walk(string(b), stop); got != want {
				t.Fatalf("token(%q, %q) = %q, want %q", b, stop, got, want)
			}
		}
	}
}

// TestSlotsOfCopies: a kind or level with the text of one but not its
// memory (a consumer's own string) has the same slot.
func TestSlotsOfCopies(t *testing.T) {
	for i, k := range Kinds {
		if got := kindSlot(Kind(strings.Clone(string(k)))); got != i {
			t.Errorf("kindSlot(copy of %q) = %d, want %d", k, got, i)
		}
	}
	for i, lv := range levels {
		if got := levelIndex(strings.Clone(lv)); got != i {
			t.Errorf("levelIndex(copy of %q) = %d, want %d", lv, got, i)
		}
	}
	for _, k := range []Kind{"", "x", "healtH", "agent_star", "other "} {
		if got := kindSlot(k); got != -1 {
			t.Errorf("kindSlot(%q) = %d, want -1", k, got)
		}
	}
}
