package hooks

import (
	"bytes"
	"log/slog"
	"strings"
	"unicode/utf8"
)

const (
	// TailSize is how much of the end of stdout and of stderr a Result keeps.
	TailSize = 4096
	// maxLine caps one logged line; the rest of the line is counted, not kept.
	maxLine = 4096
	// readChunk is the read buffer, one per running hook; memory per
	// stream stays at about maxLine + TailSize whatever the hook writes.
	readChunk = 32 << 10
)

// tail keeps the last TailSize bytes written to it, in at most twice that
// much memory.
type tail struct{ buf []byte }

func (t *tail) Write(p []byte) {
	if len(p) >= TailSize {
		t.buf = append(t.buf[:0], p[len(p)-TailSize:]...)
		return
	}
	if len(t.buf)+len(p) > 2*TailSize {
		keep := TailSize - len(p)
		t.buf = append(t.buf[:0], t.buf[len(t.buf)-keep:]...)
	}
	t.buf = append(t.buf, p...)
}

// String returns the tail as valid UTF-8: the ledger is JSON, and a cut may
// split a character or the hook may not write UTF-8 at all.
func (t *tail) String() string {
	b := t.buf
	if len(b) > TailSize {
		b = b[len(b)-TailSize:]
	}
	return validUTF8(b)
}

func validUTF8(b []byte) string {
	if utf8.Valid(b) {
		return string(b)
	}
	return strings.ToValidUTF8(string(b), "\uFFFD")
}

// stream reads one of a hook's outputs to its end, logs it line by line
// under the hook's name and keeps its tail. Lines longer than maxLine are
// cut; after maxLog bytes nothing more is logged (a runaway hook must not
// fill the journal), but the tail still follows the output to its end.
type stream struct {
	logger *slog.Logger
	name   string // stdout or stderr
	maxLog int64

	tail   tail
	line   []byte
	cut    int // bytes of the current line dropped past maxLine
	logged int64
	silent bool
	total  int64
}

// finish logs the last line, if it had no newline, and says so when the
// output went past the log limit.
func (s *stream) finish() {
	s.flush()
	if s.silent {
		s.logger.Warn("hook output was longer than the log limit; only its tail is kept",
			"stream", s.name, "bytes", s.total, "logged", s.logged)
	}
}

func (s *stream) write(p []byte) {
	s.total += int64(len(p))
	s.tail.Write(p)
	for len(p) > 0 {
		i := bytes.IndexByte(p, '\n')
		chunk := p
		if i >= 0 {
			chunk = p[:i]
		}
		if room := maxLine - len(s.line); room > 0 {
			k := min(room, len(chunk))
			s.line = append(s.line, chunk[:k]...)
			s.cut += len(chunk) - k
		} else {
			s.cut += len(chunk)
		}
		if i < 0 {
			return
		}
		s.flush()
		p = p[i+1:]
	}
}

// flush logs the pending line, if any.
func (s *stream) flush() {
	if len(s.line) == 0 && s.cut == 0 {
		return
	}
	line, cut := s.line, s.cut
	s.line, s.cut = s.line[:0], 0
	if s.silent {
		return
	}
	if s.logged += int64(len(line)); s.logged > s.maxLog {
		s.silent = true
		return
	}
	if cut > 0 {
		s.logger.Info("hook output", "stream", s.name, "line", validUTF8(line), "truncated_bytes", cut)
		return
	}
	s.logger.Info("hook output", "stream", s.name, "line", validUTF8(line))
}

// discardLogger is used when no logger is given.
var discardLogger = slog.New(slog.DiscardHandler)
