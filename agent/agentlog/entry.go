package agentlog

// Entry is a classified entry as the Classifier hands it out: the event plus
// where its lines are. Its strings are valid only during the Emit call, as
// an Event's are.
type Entry struct {
	Event
	// FirstLine is the 1-based number of the entry's first physical line
	// among the lines fed to this Classifier.
	FirstLine int64
	// Lines is how many physical lines the entry has (first + continuations).
	Lines int
	// Start and End are the byte offsets the caller gave for the entry's
	// first line's start and its last line's end.
	Start, End int64
	// Tail marks continuation lines that arrived after their entry was
	// already handed out (an idle flush, or no entry at all before them).
	// They carry the kind of the entry they continue (Other when there is
	// none) and are no new event.
	Tail bool
}

// Classifier groups physical lines into entries: a line with a timestamp
// (or a level, or a standalone marker) begins an entry; a line with neither
// continues the previous one. An entry is complete when the next one begins
// or when the caller calls Flush (end of input, or idle). It keeps no text
// of continuation lines, so memory stays bounded whatever the input.
type Classifier struct {
	// File is copied into each event's File.
	File string
	// Emit receives each complete entry, in input order. The entry's
	// Message and ids are valid only during the call (see Event): an Emit
	// that keeps the entry keeps its Clone.
	Emit func(Entry)
	// emit, when set, is used instead of Emit: the package's own readers
	// take the entry by pointer, which saves a copy of it (about 200
	// bytes) per entry. The entry is valid only during the call.
	emit func(*Entry)

	lineNo  int64
	pending bool
	cur     Entry
	tail    Entry // a continuation line handed out on its own
	// msg is the pending entry's first-line message, copied out of the
	// caller's line, which is gone by the time the entry completes
	// (unless the line is borrowed, below). The event handed out views it
	// (no copy per entry), so it is overwritten only by the next entry's
	// first line, after the Emit call returned.
	msg []byte
	at  positions // where the markers in msg are, for extract
	// file, when fileSet, is the Tailer's file: an entry's Pos is its
	// device and inode and the entry's End. Set when the entry grows,
	// not when it is handed out: a copy of the event just after stores
	// to it waits for them (a 16-byte load cannot take its bytes from
	// two 8-byte stores still in flight).
	file    Position
	fileSet bool
	// noAlone says that the line fed has no marker of those searched
	// alone (sieves.hasAlone): the Tailer found none in the chunk read.
	noAlone bool
	// borrow says that the line fed stays intact until the caller calls
	// keep (the Tailer's chunk): the entry's message then views it
	// instead of a copy, and keep copies it only if the entry is still
	// pending. borrowed says that the pending entry's message does.
	borrow, borrowed bool
	// lastKind is what continuation lines after a flush carry.
	lastKind Kind
	stamps   stampCache
	grep     grepPath
	// sieves are the marker tables, taken once from table.
	sieves *sieves
}

// Feed classifies one physical line (without its newline). start and end
// are its byte offsets in the file (end after the newline); they are only
// passed through to Entry.
func (c *Classifier) Feed(b []byte, start, end int64) {
	c.lineNo++
	if c.sieves == nil {
		c.sieves = table()
	}
	var l Line
	l.parse(b, &c.stamps, &c.grep)
	if l.Level == "" && !standalone(&l) {
		if c.pending {
			c.cur.Lines++
			c.cur.End = end
			if c.fileSet {
				c.cur.Pos.Offset = end
			}
			c.cur.Kind = refine(c.sieves, c.cur.Kind, c.cur.Level, l.Msg)
			return
		}
		kind := c.lastKind
		if kind == "" {
			kind = Other
		}
		// In a field, not a literal: a pointer to the literal would
		// send it to the heap.
		c.tail = Entry{
			Event:     Event{File: c.File, Level: "-", Kind: kind, Pos: c.pos(end)},
			FirstLine: c.lineNo, Lines: 1, Start: start, End: end, Tail: true,
		}
		c.hand(&c.tail)
		return
	}
	c.Flush()
	level := l.Level
	if level == "" {
		level = "-"
	}
	msg := l.Msg
	if c.borrowed = c.borrow; !c.borrow {
		c.msg = append(c.msg[:0], l.Msg...)
		msg = c.msg
	}
	kind, _, sets := classify(c.sieves, &l, &c.at, !c.noAlone)
	// Field by field, not c.cur = Entry{...}: the literal was built on
	// the stack and copied whole into the Classifier, about 200 bytes per
	// line twice. Every field is set (TestFeedSetsEveryField), here and
	// not in Flush: see the file field.
	e := &c.cur
	e.Time, e.File, e.Level, e.Kind = l.Time, c.File, level, kind
	e.Message, e.AgentVersion, e.CommandID, e.DocumentID = view(msg), "", "", ""
	e.Backoff, e.Pos = 0, c.pos(end)
	e.FirstLine, e.Lines, e.Start, e.End, e.Tail = c.lineNo, 1, start, end, false
	extract(&e.Event, e.Message, sets, &c.at)
	c.pending = true
}

// keep copies the pending entry's message, and its ids, which are parts
// of it, out of the lines borrowed, which the caller reuses next.
func (c *Classifier) keep() {
	if !c.pending || !c.borrowed {
		return
	}
	c.borrowed = false
	old := c.cur.Message
	c.msg = append(c.msg[:0], old...)
	c.cur.Message = view(c.msg)
	for _, id := range [...]*string{&c.cur.AgentVersion, &c.cur.CommandID, &c.cur.DocumentID} {
		if i, ok := within(*id, old); ok && *id != "" {
			*id = c.cur.Message[i : i+len(*id)]
		}
	}
}

// pos is the Pos of an entry that ends at end.
func (c *Classifier) pos(end int64) Position {
	if !c.fileSet {
		return Position{}
	}
	return Position{Dev: c.file.Dev, Inode: c.file.Inode, Offset: end}
}

// Flush hands out the pending entry, if any.
func (c *Classifier) Flush() {
	if !c.pending {
		return
	}
	c.pending = false
	c.lastKind = c.cur.Kind
	// c.cur is not cleared: Feed sets all of it for the next entry, and
	// nothing reads it while no entry is pending.
	c.hand(&c.cur)
}

// hand gives e to emit or Emit.
func (c *Classifier) hand(e *Entry) {
	if c.emit != nil {
		c.emit(e)
		return
	}
	c.Emit(*e)
}

// Pending reports whether an entry is open and where it starts: the offset
// a restart must read again from so that it is not lost.
func (c *Classifier) Pending() (start int64, ok bool) {
	return c.cur.Start, c.pending
}

// Reset forgets the open entry and the line count, for a file that was
// truncated under the reader.
func (c *Classifier) Reset() {
	c.pending, c.borrowed = false, false
	c.cur = Entry{}
	c.lastKind = ""
	c.lineNo = 0
	c.grep.path = c.grep.path[:0]
}

// Clone returns e with its own copy of the event's strings (Event.Clone),
// for an Emit that keeps the entry.
func (e Entry) Clone() Entry {
	e.Event = e.Event.Clone()
	return e
}
