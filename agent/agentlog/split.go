package agentlog

import "bytes"

// MaxLine caps a physical line. The agent's lines are short, but a JSON body
// or binary junk without newlines must not grow patchd's memory: the first
// MaxLine bytes are kept and the rest up to the newline dropped (counted).
const MaxLine = 64 << 10

// splitter cuts a byte stream into physical lines and knows each line's
// byte offsets, which is what the offsets state is made of.
type splitter struct {
	part    []byte // the line begun but not ended, at most MaxLine bytes
	partAt  int64  // offset of part's first byte
	partCut bool   // bytes of the current line were dropped
	// line gets each complete line (without '\n'), its start offset, the
	// offset just after its newline, and whether it was cut.
	line func(b []byte, start, end int64, cut bool)
}

// push feeds the bytes read at offset off (which must follow the previous
// push). Lines are handed out as soon as their newline is seen.
func (s *splitter) push(b []byte, off int64) {
	for len(b) > 0 {
		i := bytes.IndexByte(b, '\n')
		if i < 0 {
			s.keep(b, off)
			return
		}
		if len(s.part) == 0 && !s.partCut {
			// The common case: a whole line inside the buffer, no copy.
			line, cut := b[:i], false
			if len(line) > MaxLine {
				line, cut = line[:MaxLine], true
			}
			s.line(line, off, off+int64(i)+1, cut)
		} else {
			s.keep(b[:i], off)
			s.line(s.part, s.partAt, off+int64(i)+1, s.partCut)
			s.part, s.partCut = s.part[:0], false
		}
		b = b[i+1:]
		off += int64(i) + 1
	}
}

// keep appends to the unfinished line, up to MaxLine.
func (s *splitter) keep(b []byte, off int64) {
	if len(s.part) == 0 && !s.partCut {
		s.partAt = off
	}
	room := MaxLine - len(s.part)
	if len(b) > room {
		b, s.partCut = b[:room], true
	}
	s.part = append(s.part, b...)
}

// pending reports whether part of a line has been pushed without its newline.
func (s *splitter) pending() bool { return len(s.part) > 0 || s.partCut }

// flush hands out an unfinished line as complete (end of input for the CLI).
func (s *splitter) flush(end int64) {
	if s.pending() {
		s.line(s.part, s.partAt, end, s.partCut)
		s.part, s.partCut = s.part[:0], false
	}
}
