package agentlog

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"strconv"
)

// ClassifyStream prints "<line_number>\t<level>\t<event_kind>" for every
// physical line of r (what `patchd agent-log classify` does). It accepts any
// bytes: lines longer than MaxLine are cut, a missing final newline is fine.
// The only errors are from reading r or writing w.
func ClassifyStream(r io.Reader, w io.Writer) error {
	bw := bufio.NewWriterSize(w, 64<<10)
	var werr error
	buf := make([]byte, 0, 32)
	row := func(n int64, level string, kind Kind) {
		if werr != nil {
			return
		}
		buf = strconv.AppendInt(buf[:0], n, 10)
		buf = append(buf, '\t')
		buf = append(buf, level...)
		buf = append(buf, '\t')
		buf = append(buf, kind...)
		buf = append(buf, '\n')
		_, werr = bw.Write(buf)
	}
	c := Classifier{Emit: func(e Entry) {
		row(e.FirstLine, e.Level, e.Kind)
		for i := 1; i < e.Lines; i++ {
			row(e.FirstLine+int64(i), "-", e.Kind)
		}
	}}
	s := splitter{line: func(b []byte, start, end int64, _ bool) { c.Feed(b, start, end) }}
	chunk := make([]byte, 256<<10)
	var off int64
	for {
		n, err := r.Read(chunk)
		if n > 0 {
			s.push(chunk[:n], off)
			off += int64(n)
		}
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			s.flush(off)
			c.Flush()
			bw.Flush()
			return fmt.Errorf("read: %w", err)
		}
		if werr != nil {
			return fmt.Errorf("write: %w", werr)
		}
	}
	s.flush(off)
	c.Flush()
	if werr != nil {
		return fmt.Errorf("write: %w", werr)
	}
	if err := bw.Flush(); err != nil {
		return fmt.Errorf("write: %w", err)
	}
	return nil
}
