package agentlog

import (
	"bufio"
	"bytes"
	"flag"
	"fmt"
	"os"
	"strings"
	"testing"
)

var update = flag.Bool("update", false, "rewrite testdata/vocabulary.golden.tsv from the classifier's decisions")

// vocabularyPath is the agent's whole log vocabulary: every log call of
// amazon-ssm-agent 2.3 to 3.3 as level, format, source file and versions.
// It lives beside the repository (CI puts it there), not in it.
const vocabularyPath = "../../../shared/testdata/ssm-agent-log-calls.tsv"

const vocabularyGolden = "testdata/vocabulary.golden.tsv"

// TestVocabulary classifies every INFO, WARN, ERROR and CRITICAL format
// the agent can print, with its verbs filled by plausible values, and
// compares the decisions with the reviewed golden file: a change of the
// classifier shows as a diff of decisions. go test -run TestVocabulary
// -update rewrites the file; review the diff before committing it
// (docs/agent-log-events.md defines each kind).
func TestVocabulary(t *testing.T) {
	f, err := os.Open(vocabularyPath)
	if os.IsNotExist(err) {
		t.Skipf("%s not present: the vocabulary lives beside the repository", vocabularyPath)
	}
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var got bytes.Buffer
	got.WriteString("level\tkind\tformat\tsource_file\n")
	sc := bufio.NewScanner(f)
	sc.Buffer(nil, 1<<20)
	rows := 0
	for n := 0; sc.Scan(); n++ {
		if n == 0 {
			continue // header
		}
		cols := strings.Split(sc.Text(), "\t")
		if len(cols) < 3 {
			t.Fatalf("%s:%d: malformed row %q", vocabularyPath, n+1, sc.Text())
		}
		level, format, file := cols[0], cols[1], cols[2]
		switch level {
		case "INFO", "WARN", "ERROR", "CRITICAL":
		default:
			continue
		}
		kind := classifyEntry(vocabularyLine(level, format, file))
		fmt.Fprintf(&got, "%s\t%s\t%s\t%s\n", level, kind, format, file)
		rows++
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	if rows < 2500 {
		t.Fatalf("only %d formats read from %s; expected the whole vocabulary", rows, vocabularyPath)
	}
	if *update {
		if err := os.WriteFile(vocabularyGolden, got.Bytes(), 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(vocabularyGolden)
	if err != nil {
		t.Fatalf("%v (go test -run TestVocabulary -update ./agent/agentlog writes it)", err)
	}
	diffDecisions(t, want, got.Bytes())
}

// diffDecisions reports every format whose kind differs, by its row.
func diffDecisions(t *testing.T, want, got []byte) {
	t.Helper()
	wl := strings.Split(string(want), "\n")
	gl := strings.Split(string(got), "\n")
	if len(wl) != len(gl) {
		t.Errorf("%s has %d rows, the vocabulary gives %d (rerun with -update and review the diff)", vocabularyGolden, len(wl), len(gl))
	}
	bad := 0
	for i := 0; i < len(wl) && i < len(gl); i++ {
		if wl[i] != gl[i] {
			bad++
			if bad <= 40 {
				t.Errorf("row %d:\n  golden %s\n  now    %s", i+1, wl[i], gl[i])
			}
		}
	}
	if bad > 0 {
		t.Errorf("%d decisions differ from %s; if the change is meant, rerun with -update and review the diff", bad, vocabularyGolden)
	}
}

// classifyEntry classifies text (one entry, possibly several lines) and
// returns the kind of its first entry.
func classifyEntry(text string) Kind {
	var kind Kind
	c := Classifier{Emit: func(e Entry) {
		if kind == "" {
			kind = e.Kind
		}
	}}
	for i, l := range strings.Split(text, "\n") {
		c.Feed([]byte(l), int64(i), int64(i+1))
	}
	c.Flush()
	return kind
}

// vocabularyLine is the line the agent prints for format: the seelog
// prefix, the component tag of the process that logs it, and the format
// with its verbs filled and its escapes (\n, \t) as the characters.
func vocabularyLine(level, format, file string) string {
	tag := "[ssm-agent-worker]"
	switch {
	case strings.HasPrefix(file, "core/"):
		tag = "[amazon-ssm-agent]"
	case strings.HasPrefix(file, "agent/session/"):
		tag = "[ssm-session-worker]"
	case strings.Contains(file, "/outofproc/worker/") || strings.Contains(file, "/outofproc/sessionworker/"):
		// The session worker's "document: %v worker started" is the
		// document worker's too; the row stands for the document worker.
		tag = "[ssm-document-worker]"
	}
	if v, ok := plausible[format]; ok {
		return "2024-10-21 10:00:00.0000 " + level + " " + tag + " " + v
	}
	return "2024-10-21 10:00:00.0000 " + level + " " + tag + " " + fillVerbs(format)
}

// plausible are the formats whose words are not enough to decide: the
// agent fills their verbs with a name that does, always the same one.
var plausible = map[string]string{
	"Stopping %s.":       "Stopping MessageGatewayService.",                // session/session.go, the module's name
	"Starting Agent: %v": "Starting Agent: amazon-ssm-agent - v2.3.1644.0", // agent/agent/agent.go, the banner
}

// fillVerbs replaces each Go verb with a neutral value of its type, so
// that the decision rests on the format's own words.
func fillVerbs(format string) string {
	var b strings.Builder
	for i := 0; i < len(format); i++ {
		c := format[i]
		if c == '\\' && i+1 < len(format) {
			switch format[i+1] {
			case 'n':
				b.WriteByte('\n')
				i++
				continue
			case 't':
				b.WriteByte('\t')
				i++
				continue
			}
		}
		if c != '%' || i+1 >= len(format) {
			b.WriteByte(c)
			continue
		}
		j := i + 1
		for j < len(format) && strings.IndexByte("+-# 0123456789.", format[j]) >= 0 {
			j++
		}
		if j >= len(format) {
			b.WriteString(format[i:])
			break
		}
		switch format[j] {
		case 'v', 's':
			if strings.HasSuffix(b.String(), " - ") {
				b.WriteString("v3.3.1142.0") // "<program> - %v" is a version banner
			} else {
				b.WriteString("value")
			}
		case '%':
			b.WriteByte('%')
		case 'd', 'b':
			b.WriteString("3")
		case 't':
			b.WriteString("true")
		case 'q':
			b.WriteString(`"value"`)
		case 'p':
			b.WriteString("0xc000012345")
		case 'T':
			b.WriteString("*errors.errorString")
		default: // v, s, w, x and the rest
			b.WriteString("value")
		}
		i = j
	}
	return b.String()
}

// TestFillVerbs: the filler keeps the words and replaces only verbs.
func TestFillVerbs(t *testing.T) {
	for in, want := range map[string]string{
		"Sleeping for %v before retrying": "Sleeping for value before retrying",
		"%d%% done: %+v\\nnext %s":        "3% done: value\nnext value",
		"tab\\there %q %t":                "tab\there \"value\" true",
		"trailing %":                      "trailing %",
		"amazon-ssm-agent - %v":           "amazon-ssm-agent - v3.3.1142.0",
	} {
		if got := fillVerbs(in); got != want {
			t.Errorf("fillVerbs(%q) = %q, want %q", in, got, want)
		}
	}
}
