package agentlog

import (
	"bytes"
	"encoding/binary"
	"time"
)

// Line is one parsed physical line. Its slices point into the caller's
// buffer and are valid only until the caller reuses it.
type Line struct {
	// Time is the agent's own timestamp, in the host's local zone as seelog
	// writes it; zero when the line has none.
	Time time.Time
	// Level is TRACE..CRITICAL, or "" when the line has no level token.
	Level string
	// Msg is the text after timestamp, level and errors.log's
	// "[Func @ file.go.N]"; for a line without them it is the whole line
	// (after a journald/syslog prefix).
	Msg []byte
	// Source is errors.log's "Func @ file.go.N", empty when absent.
	Source []byte
	// Program is the syslog tag's program name when the line came through
	// journald or syslog ("amazon-ssm-agent", "systemd"), else empty.
	Program []byte
	// tag is 1 + the index in processTags of the tag Msg begins with, 0
	// for none: the parser has tested for it already, the scan need not.
	tag uint8
}

// Foreign reports whether a syslog-prefixed line was written by a program
// other than the agent (systemd, yum): it can never continue an agent entry.
func (l *Line) Foreign() bool {
	return len(l.Program) > 0 && !bytes.Contains(l.Program, []byte("ssm"))
}

// levels are seelog's %LEVEL tokens (amazon-ssm-agent
// agent/log/logger/defaultconfig.go formats "%Date(...) %LEVEL %Msg%n").
var levels = [...]string{"TRACE", "DEBUG", "INFO", "WARN", "ERROR", "CRITICAL"}

// ParseLine splits one physical line (without its newline) into its parts.
// It never fails: a line it cannot make sense of has no time and no level
// and is all message. No regexp: this runs on every line of a 30 MB log.
func ParseLine(b []byte) Line { return parseLine(b, nil) }

// parseLine is ParseLine with a cache of the last minute's time (may be nil).
func parseLine(b []byte, tc *stampCache) Line {
	var l Line
	l.parse(b, tc, nil)
	return l
}

// parse is parseLine into l, which must be zero: the Classifier's Feed
// keeps its Line on the stack instead of copying one back per line.
func (l *Line) parse(b []byte, tc *stampCache, gp *grepPath) {
	b = trimCR(b)
	if len(b) > 0 && isDigit(b[0]) {
		// An agent line begins with its date; only a syslog prefix
		// begins otherwise (its RFC 3339 form with a digit too).
		if len(b) > 20 && (b[10] == 'T' || b[10] == '.') {
			b, l.Program = stripSyslog(b)
		}
	} else if len(b) > 0 {
		b, l.Program = stripSyslog(b)
		if l.Program == nil {
			if g := stripGrep(b, gp); len(g) != len(b) {
				b, l.Program = stripSyslog(g) // grep over a syslog file
			}
		}
	}
	if t, n, ok := parseStamp(b, tc); ok {
		rest := b[n:]
		if lv, m, ok := parseLevel(rest); ok {
			l.Time, l.Level = t, lv
			l.Msg, l.Source, l.tag = stripSource(rest[m:])
			return
		}
	}
	// seelog's console format is "%LEVEL %Msg" with no date; lines like that
	// appear in pasted console output and in the journal, and so do lines
	// whose timestamp was cut off before the level (" INFO [Component] ...").
	lb := b
	for len(lb) > 0 && lb[0] == ' ' {
		lb = lb[1:]
	}
	if lv, m, ok := parseLevel(lb); ok && m < len(lb) {
		l.Level = lv
		l.Msg, l.Source, l.tag = stripSource(lb[m:])
		return
	}
	l.Msg = b
}

// stripGrep removes the file prefix grep puts before each line of several
// files: "<path>:<line>:" (grep -rn), "<path>-<line>-" (a context line of
// grep -C) and "<path>:" (grep -r). A path is taken as one only when it is
// followed by an agent line, or when it is the path last seen that way
// (gp remembers it, when not nil), so that a continuation line ("caused
// by: x") is not cut at its first colon.
func stripGrep(b []byte, gp *grepPath) []byte {
	if gp != nil && len(gp.path) > 0 && len(b) > len(gp.path) && string(b[:len(gp.path)]) == string(gp.path) {
		if sep := b[len(gp.path)]; sep == ':' || sep == '-' {
			if rest, ok := afterLineNo(b[len(gp.path)+1:], sep); ok {
				return rest
			}
			if sep == ':' {
				return b[len(gp.path)+1:]
			}
		}
	}
	if b[0] == ' ' || b[0] == '\t' || b[0] == '{' || b[0] == '"' {
		return b
	}
	// The path ends at a separator followed by what an agent line or a
	// line number begins with. Paths have no spaces in practice: a space
	// first means this is no prefix.
	for i := 1; i < len(b) && i < 4096; i++ {
		c := b[i]
		if c == ' ' || c == '\t' {
			return b
		}
		if (c != ':' && c != '-') || i+1 >= len(b) {
			continue
		}
		rest := b[i+1:]
		if r, ok := afterLineNo(rest, c); ok {
			rest = r
		} else if c == '-' {
			continue
		}
		if !agentLineStart(rest) {
			if _, prog := stripSyslog(rest); prog == nil {
				continue
			}
		}
		if gp != nil {
			gp.path = append(gp.path[:0], b[:i]...)
		}
		return rest
	}
	return b
}

// afterLineNo reads "<digits><sep>" at the start of b.
func afterLineNo(b []byte, sep byte) ([]byte, bool) {
	n := 0
	for n < len(b) && n < 12 && isDigit(b[n]) {
		n++
	}
	if n == 0 || n >= len(b) || b[n] != sep {
		return b, false
	}
	return b[n+1:], true
}

// agentLineStart reports whether b begins as an agent line does: its date
// and time and a level, or a level after a cut timestamp.
func agentLineStart(b []byte) bool {
	if _, n, ok := parseStamp(b, nil); ok {
		_, _, ok := parseLevel(b[n:])
		return ok
	}
	for len(b) > 0 && b[0] == ' ' {
		b = b[1:]
	}
	_, m, ok := parseLevel(b)
	return ok && m < len(b)
}

func trimCR(b []byte) []byte {
	if n := len(b); n > 0 && b[n-1] == '\r' {
		return b[:n-1]
	}
	return b
}

func isDigit(c byte) bool { return c >= '0' && c <= '9' }

// digits reports whether b[i:j] are all digits and returns their value.
func digits(b []byte, i, j int) (int, bool) {
	if j > len(b) {
		return 0, false
	}
	v := 0
	for k := i; k < j; k++ {
		if !isDigit(b[k]) {
			return 0, false
		}
		v = v*10 + int(b[k]-'0')
	}
	return v, true
}

// parseStamp reads "YYYY-MM-DD HH:MM:SS" with an optional ".ffff" (any
// number of digits: 3.3.808.0 and later write four) followed by a space.
func parseStamp(b []byte, tc *stampCache) (time.Time, int, bool) {
	if len(b) < 20 || b[4] != '-' || b[7] != '-' || b[10] != ' ' || b[13] != ':' || b[16] != ':' {
		return time.Time{}, 0, false
	}
	// A log's lines come many per minute: when the minute is the one
	// cached, it was valid then and only the seconds are read.
	cached := tc.has(b[:16])
	var y, mo, d, h, mi int
	if !cached {
		var ok1, ok2, ok3, ok4, ok5 bool
		y, ok1 = digits(b, 0, 4)
		mo, ok2 = digits(b, 5, 7)
		d, ok3 = digits(b, 8, 10)
		h, ok4 = digits(b, 11, 13)
		mi, ok5 = digits(b, 14, 16)
		if !(ok1 && ok2 && ok3 && ok4 && ok5) || mo < 1 || mo > 12 || d < 1 || d > 31 || h > 23 || mi > 59 {
			return time.Time{}, 0, false
		}
	}
	s, ok := digits(b, 17, 19)
	if !ok || s > 60 {
		return time.Time{}, 0, false
	}
	n, ns := 19, 0
	if b[n] == '.' {
		n++
		// The first nine digits as a number, then scaled once: a digit
		// costs a multiply-add, not also a division of the scale.
		start, frac, k := n, 0, 0
		for n < len(b) && isDigit(b[n]) {
			if k < 9 {
				frac = frac*10 + int(b[n]-'0')
				k++
			}
			n++
		}
		if n == start {
			return time.Time{}, 0, false
		}
		ns = frac * pow10[9-k]
	}
	if n >= len(b) || b[n] != ' ' {
		return time.Time{}, 0, false
	}
	if cached && s <= 59 {
		return tc.at(s, ns), n + 1, true
	}
	if cached { // a leap second: time.Date, from the fields, which are valid
		y, _ = digits(b, 0, 4)
		mo, _ = digits(b, 5, 7)
		d, _ = digits(b, 8, 10)
		h, _ = digits(b, 11, 13)
		mi, _ = digits(b, 14, 16)
	}
	return tc.date(b[:16], y, mo, d, h, mi, s, ns), n + 1, true
}

// pow10 scales the digits of a fraction of a second to nanoseconds.
var pow10 = [...]int{1, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9} // pow10[i] is 10 to the i

// stampCache keeps the last "YYYY-MM-DD HH:MM" seen and its time: a log's
// lines come many per minute, and time.Date in the local zone costs more
// than the rest of the parse.
type stampCache struct {
	key  [16]byte
	base time.Time // key's minute at second 0
	ok   bool
	// unix is base's Unix time when time.Unix(unix, 0) == base, as it is
	// in the local zone (unix, like time.Date, returns a Time with Local
	// as its Location); then at builds a time with time.Unix, which is
	// inlined, where base.Add is a call. Else it is -1.
	unix int64
}

// at is key's minute at second s (0 to 59) and ns nanoseconds: what
// base.Add of them is, field for field.
func (tc *stampCache) at(s, ns int) time.Time {
	if tc.unix >= 0 {
		return time.Unix(tc.unix+int64(s), int64(ns))
	}
	return tc.base.Add(time.Duration(s)*time.Second + time.Duration(ns))
}

// grepPath is the path of grep output ("<path>:" or "<path>-") last seen
// before an agent line, so that the continuation lines after it lose it
// too. A Classifier keeps one.
type grepPath struct {
	path []byte
}

// has reports whether key is the cached minute. Two words, not a string
// comparison: this runs for every line.
func (tc *stampCache) has(key []byte) bool {
	return tc != nil && tc.ok && binary.LittleEndian.Uint64(key) == binary.LittleEndian.Uint64(tc.key[:8]) &&
		binary.LittleEndian.Uint64(key[8:]) == binary.LittleEndian.Uint64(tc.key[8:])
}

// date is time.Date(y, mo, d, h, mi, s, ns, time.Local), from the cache when
// key is the cached minute.
func (tc *stampCache) date(key []byte, y, mo, d, h, mi, s, ns int) time.Time {
	if tc == nil || s > 59 {
		return time.Date(y, time.Month(mo), d, h, mi, s, ns, time.Local)
	}
	if !tc.ok || string(key) != string(tc.key[:]) {
		base := time.Date(y, time.Month(mo), d, h, mi, 0, 0, time.Local)
		// Adding the seconds equals time.Date only where the zone's
		// offset cannot change: no transition within a day of the
		// minute (time.Date looks up the zone at points up to the
		// largest offset away). Near one, every line pays time.Date.
		start, end := base.ZoneBounds()
		if (!start.IsZero() && base.Sub(start) < 30*time.Hour) || (!end.IsZero() && end.Sub(base) < 30*time.Hour) {
			tc.ok = false
			return time.Date(y, time.Month(mo), d, h, mi, s, ns, time.Local)
		}
		copy(tc.key[:], key)
		tc.base, tc.ok, tc.unix = base, true, -1
		if u := base.Unix(); u >= 0 && time.Unix(u, 0) == base {
			tc.unix = u
		}
	}
	return tc.at(s, ns)
}

// parseLevel reads a level token followed by a space or the end of line and
// returns the level and how many bytes it took (with the space).
func parseLevel(b []byte) (string, int, bool) {
	if len(b) < 4 {
		return "", 0, false
	}
	// The levels' first letters differ: one comparison picks the level,
	// and one with a constant, which compiles to a load or two instead of
	// a call, checks it.
	var lv string
	switch b[0] {
	case 'T':
		if len(b) >= 5 && string(b[:5]) == "TRACE" {
			lv = "TRACE"
		}
	case 'D':
		if len(b) >= 5 && string(b[:5]) == "DEBUG" {
			lv = "DEBUG"
		}
	case 'I':
		if string(b[:4]) == "INFO" {
			lv = "INFO"
		}
	case 'W':
		if string(b[:4]) == "WARN" {
			lv = "WARN"
		}
	case 'E':
		if len(b) >= 5 && string(b[:5]) == "ERROR" {
			lv = "ERROR"
		}
	case 'C':
		if len(b) >= 8 && string(b[:8]) == "CRITICAL" {
			lv = "CRITICAL"
		}
	}
	if lv == "" {
		return "", 0, false
	}
	n := len(lv)
	if n == len(b) {
		return lv, n, true
	}
	if b[n] == ' ' || b[n] == '\t' {
		return lv, n + 1, true
	}
	return "", 0, false
}

// stripSource removes errors.log's "[FuncShort @ file.go.N] " from the
// front of a message (defaultconfig.go's fmterror format). tag is 1 + the
// index of the process tag m begins with instead, 0 for none.
func stripSource(m []byte) (msg, src []byte, tag uint8) {
	if len(m) < 5 || m[0] != '[' {
		return m, nil, 0
	}
	// The agent's own log begins nearly every message with its process
	// tag, which is no source: three word comparisons instead of a walk
	// over the tag.
	// Their second bytes differ ('s', 'a'): one tag to test, not both.
	for i := range processTagWords {
		if w := &processTagWords[i]; m[1] == w.tag[1] && w.begins(view(m)) {
			return m, nil, uint8(i + 1)
		}
	}
	// The first tag is short: its end and its " @ " in one pass over it,
	// instead of two searches from the start of the line.
	end, at := -1, false
	for i := 1; i < len(m); i++ {
		c := m[i]
		if c == ']' {
			end = i
			break
		}
		if c == '@' && i > 1 && m[i-1] == ' ' && i+1 < len(m) && m[i+1] == ' ' {
			at = true
		}
	}
	if end < 0 || !at {
		return m, nil, 0
	}
	inner := m[1:end]
	rest := m[end+1:]
	if len(rest) > 0 && rest[0] == ' ' {
		rest = rest[1:]
	}
	return rest, inner, 0
}

var months = []string{"Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"}

// stripSyslog removes a journald/syslog prefix: "Mmm dd hh:mm:ss host tag: "
// (BSD syslog, journalctl's default; with ".ffffff" after the seconds,
// journalctl -o short-precise) or "<RFC 3339 time> host tag: "
// (rsyslog's high-precision format, journalctl -o short-iso), either
// without its host (the snap's journal lines as some tools show them), or
// the tag alone, "program[pid]: " (syslog lines without the time). The
// time may also be journalctl's short-full ("Mon 2024-10-21 10:00:00 UTC"),
// short-monotonic ("[ 1234.567890]") or short-unix ("1729504800.123456"). The tag is "program[pid]" or "program".
func stripSyslog(b []byte) (rest, program []byte) {
	if len(b) == 0 {
		return b, nil
	}
	n := 0
	switch {
	case len(b) > 16 && b[3] == ' ' && b[6] == ' ' && b[9] == ':' && b[12] == ':' && isMonth(b[:3]):
		if !(b[4] == ' ' || isDigit(b[4])) || !isDigit(b[5]) {
			return b, nil
		}
		n = 15
		if b[n] == '.' { // journalctl -o short-precise: microseconds
			n++
			for n < len(b) && isDigit(b[n]) {
				n++
			}
		}
		if n >= len(b) || b[n] != ' ' {
			return b, nil
		}
		n++
	case len(b) > 20 && b[4] == '-' && b[7] == '-' && b[10] == 'T' && b[13] == ':' && b[16] == ':':
		sp := bytes.IndexByte(b[19:], ' ')
		if sp < 0 {
			return b, nil
		}
		n = 19 + sp + 1
	case len(b) > 25 && b[3] == ' ' && b[8] == '-' && b[11] == '-' && b[14] == ' ' && b[17] == ':' && b[20] == ':':
		// journalctl -o short-full: "Mon 2024-10-21 10:00:00 UTC "
		// (with-unit too), the fraction optional, then the zone.
		n = 22
		for n < len(b) && (isDigit(b[n]) || b[n] == '.') {
			n++
		}
		if n >= len(b) || b[n] != ' ' {
			return b, nil
		}
		sp := bytes.IndexByte(b[n+1:], ' ')
		if sp <= 0 {
			return b, nil
		}
		n += 1 + sp + 1
	case b[0] == '[':
		// journalctl -o short-monotonic: "[ 1234.567890] "
		n = 1
		for n < len(b) && n < 24 && (b[n] == ' ' || isDigit(b[n]) || b[n] == '.') {
			n++
		}
		if n < 4 || n+1 >= len(b) || b[n] != ']' || b[n+1] != ' ' || !isDigit(b[n-1]) || bytes.IndexByte(b[1:n], '.') < 0 {
			return b, nil
		}
		n += 2
	case len(b) > 12 && b[10] == '.' && isDigit(b[0]) && isDigit(b[9]):
		// journalctl -o short-unix: "1729504800.123456 "
		for n < 10 && isDigit(b[n]) {
			n++
		}
		if n < 10 {
			return b, nil
		}
		n++
		for n < len(b) && isDigit(b[n]) {
			n++
		}
		if n >= len(b) || b[n] != ' ' {
			return b, nil
		}
		n++
	default:
		// The tag alone must have its pid: "word: " is a message too.
		if end, ok := tagEnd(b, 0); ok && b[end-1] == ']' {
			return tagRest(b, 0, end)
		}
		return b, nil
	}
	// "tag: " right after the time (no host), or "host tag: ".
	if end, ok := tagEnd(b, n); ok {
		return tagRest(b, n, end)
	}
	sp := bytes.IndexByte(b[n:], ' ')
	if sp <= 0 {
		return b, nil
	}
	n += sp + 1
	end, ok := tagEnd(b, n)
	if !ok {
		return b, nil
	}
	return tagRest(b, n, end)
}

// tagEnd finds the ':' that ends a syslog tag beginning at b[n]: the tag
// has no space, is not empty, and its ':' is followed by a space or the
// end of the line.
func tagEnd(b []byte, n int) (int, bool) {
	for i := n; i < len(b) && i < n+128; i++ {
		switch b[i] {
		case ':':
			if i == n || (i+1 < len(b) && b[i+1] != ' ') {
				return 0, false
			}
			return i, true
		case ' ', '\t':
			return 0, false
		}
	}
	return 0, false
}

// tagRest splits at the tag b[n:end]: the message after ": " and the
// program name (the tag without "[pid]").
func tagRest(b []byte, n, end int) (rest, program []byte) {
	tag := b[n:end]
	if i := bytes.IndexByte(tag, '['); i > 0 {
		tag = tag[:i]
	}
	rest = b[end+1:]
	if len(rest) > 0 && rest[0] == ' ' {
		rest = rest[1:]
	}
	return rest, tag
}

func isMonth(b []byte) bool {
	for _, m := range months {
		if string(b) == m {
			return true
		}
	}
	return false
}
