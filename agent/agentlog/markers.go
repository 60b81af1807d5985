package agentlog

import (
	"bytes"
	"math"
	"math/bits"
	"slices"
	"strings"
	"sync"
)

// markerTable finds every marker of the classifier in one pass over a line,
// looking at every fifth position only (a variant of Wu-Manber): each
// marker is entered under its bytes from offsets 0 to 4, so wherever it
// starts, one of those offsets lands on a position the scan visits. A
// visited position is looked up by the hash of its next eight bytes, and by
// that of its next four for the markers with fewer than eight bytes left
// from an offset. A table of the entered hashes (hit) rejects almost every
// position with two byte loads. Eight bytes, not four, so that blocks like
// "[ssm" or "ing " (in every line of the agent's log, and in markers) do
// not pass. A position that passes finds its
// entries by the rank of its bit and checks each as a word before the whole
// marker. The cost is well under a nanosecond per byte whatever the number
// of markers, instead of one substring search per marker.
//
// Registering a marker (reg, at package init) only gives it an id; the
// sieves are built once, on the first scan (table), so that a patchd
// command that never reads a log pays nothing for them at start-up.
type markerTable struct {
	pats []string
}

// sieves are the markerTable's lookup structures, built from its patterns.
type sieves struct {
	// wide is keyed by eight bytes, narrow by four.
	wide, narrow sieve
	// alone are the markers too short for the stride, searched for one by
	// one.
	alone []int
	// hit has a byte per hash: bit 0 set when wide has the hash, bit 1
	// when narrow has it. The scan tests positions in it: a byte load
	// each, where a bit set costs a shift by a variable count too.
	hit [1 << 16]uint8
	// tags are the prefixes the scan may start after (skip), and skips
	// says which of processTags they are.
	tags  []tagWords
	skips [len(processTagWords)]bool
	// clear[id] is how far into marker id the next marker can begin at
	// the soonest (clearance): the scan resumes there once it has found
	// it, instead of passing the sieve again at each of its positions.
	clear [maxMarkers]uint8
}

// processTags are the tags the agent's processes put first in their
// lines' messages (the document and session workers' are markers).
var processTags = []string{"[ssm-agent-worker]", "[amazon-ssm-agent]"}

// processTagWords are processTags as tagWords, for the parser: neither
// has an errors.log source in it (stripSource).
var processTagWords = [...]tagWords{tagWordsOf(processTags[0]), tagWordsOf(processTags[1])}

// skippable reports whether no marker can begin inside tag in a message
// that begins with tag: none is in it, and none begins with a part of it
// that ends it (the space after a tag is left to the scan, as " is
// running" begins with one).
func skippable(tag string, pats []string) bool {
	for _, p := range pats {
		if strings.Contains(tag, p) {
			return false
		}
		for s := 0; s < len(tag); s++ {
			if strings.HasPrefix(p, tag[s:]) {
				return false
			}
		}
	}
	return true
}

// sieve is a bit set of hashes and the entries of each.
type sieve struct {
	// bits has a bit per hash of an entered block: 8 KiB.
	bits [1 << 16 / 64]uint64
	// rank[w] is the number of bits set in bits[:w]; with the bits set
	// below a hash in its word, it numbers the hash among those entered.
	rank [1 << 16 / 64]uint16
	// entries are the markers' blocks by the number of their hash: those
	// of hash number k are entries[at[k]:at[k+1]].
	entries []entry
	at      []uint16
}

// entry is a marker entered under a block.
type entry struct {
	block uint64 // the marker's eight (or four) bytes at off, little-endian
	id    uint8
	off   uint8 // offset of the block in the marker
}

// stride is how far the scan moves; a marker shorter than stride+3 bytes
// has too few blocks and is searched for by itself. Only "Bye." is: the
// other short texts count only next to a longer marker and are looked for
// then (isStartLine).
const stride = 5

func hash4(x uint32) uint32 { return (x * 0x9E3779B1) >> 16 }
func hash8(x uint64) uint32 { return uint32((x * 0x9E3779B97F4A7C15) >> 48) }

// found is the set of markers a line contains.
type found [2]uint64

// positions are where scan found each marker of a line first: only the
// entries of the markers in its found are set. The extraction reads the
// facts' places from it instead of searching the line again, which cost as
// much as the scan on lines with ids (strings.Index on "aws.ssm." stops at
// every "a").
type positions [maxMarkers]int32

const maxMarkers = 64 * len(found{})

var markers markerTable

// reg registers patterns and returns their set. It runs at package init:
// ids only, by a search of the few patterns registered so far.
func reg(pats ...string) found {
	var f found
	for _, p := range pats {
		if len(p) < 4 {
			panic("agentlog: marker too short for the scan: " + p) // a programming error, at init
		}
		id := slices.Index(markers.pats, p)
		if id < 0 {
			id = len(markers.pats)
			if id >= maxMarkers {
				panic("agentlog: too many markers") // a programming error, at init
			}
			markers.pats = append(markers.pats, p)
		}
		f[id/64] |= 1 << (id % 64)
	}
	return f
}

// table returns the sieves of every registered marker, built on first use.
var table = sync.OnceValue(func() *sieves { return buildSieves(markers.pats) })

// buildSieves enters each marker under its blocks at offsets 0 to stride-1.
func buildSieves(pats []string) *sieves {
	t := &sieves{}
	wide, narrow := map[uint32][]entry{}, map[uint32][]entry{}
	for id, p := range pats {
		if len(p) < stride+3 {
			t.alone = append(t.alone, id)
			continue
		}
		for off := 0; off < stride; off++ {
			if len(p)-off >= 8 {
				b := le64(p[off:])
				wide[hash8(b)] = append(wide[hash8(b)], entry{block: b, id: uint8(id), off: uint8(off)})
			} else {
				b := le32(p[off:])
				narrow[hash4(b)] = append(narrow[hash4(b)], entry{block: uint64(b), id: uint8(id), off: uint8(off)})
			}
		}
	}
	t.wide.fill(wide)
	t.narrow.fill(narrow)
	for h := range wide {
		t.hit[h] |= 1
	}
	for h := range narrow {
		t.hit[h] |= 2
	}
	for id, p := range pats {
		t.clear[id] = uint8(clearance(p, pats, t.alone))
	}
	for i, tag := range processTags {
		if skippable(tag, pats) {
			t.tags = append(t.tags, tagWordsOf(tag))
			t.skips[i] = true
		}
	}
	return t
}

// clearance is the first offset in p, after 0, at which a marker of pats
// other than those searched alone can begin in a text that has p at 0: one
// that begins with p's bytes from there, or that p has there. It is
// len(p) when there is none. Found p at s, the scan knows that no marker
// begins at s+1 to s+clearance-1.
func clearance(p string, pats []string, alone []int) int {
	for k := 1; k < len(p); k++ {
		for id, q := range pats {
			if slices.Contains(alone, id) {
				continue // searched for in the whole message anyway
			}
			n := min(len(p)-k, len(q))
			if p[k:k+n] == q[:n] {
				return k
			}
		}
	}
	return min(len(p), math.MaxUint8)
}

// fill sets the bits of the hashes in byHash and lays their entries out
// by the number of their hash.
func (s *sieve) fill(byHash map[uint32][]entry) {
	hashes := make([]uint32, 0, len(byHash))
	for h := range byHash {
		s.bits[h>>6] |= 1 << (h & 63)
		hashes = append(hashes, h)
	}
	n := 0
	for w, word := range s.bits {
		s.rank[w] = uint16(n)
		n += bits.OnesCount64(word)
	}
	slices.Sort(hashes)
	for _, h := range hashes {
		s.at = append(s.at, uint16(len(s.entries)))
		s.entries = append(s.entries, byHash[h]...)
	}
	s.at = append(s.at, uint16(len(s.entries)))
}

// has reports whether h's bit is set.
func (s *sieve) has(h uint32) bool { return s.bits[h>>6]&(1<<(h&63)) != 0 }

// lookup returns the entries under h, none when its bit is not set.
func (s *sieve) lookup(h uint32) []entry {
	word, bit := s.bits[h>>6], uint64(1)<<(h&63)
	if word&bit == 0 {
		return nil
	}
	k := int(s.rank[h>>6]) + bits.OnesCount64(word&(bit-1))
	return s.entries[s.at[k]:s.at[k+1]]
}

// scan returns the markers m contains and, when at is not nil, sets their
// first positions in it.
func scan(m string, at *positions) found { return scanWith(table(), m, at) }

// scanWith is scan with the sieves in hand: the Classifier keeps them, so
// that a line does not pay for table's check that they are built.
func scanWith(t *sieves, m string, at *positions) found {
	f, _ := scanFrom(t, m, t.skip(m), at, true)
	return f
}

// scanFrom is scanWith from m[start:], where no marker can begin before
// start (after a skippable tag). With alone false it does not search for
// the markers searched alone: the caller knows m has none (hasAlone). It
// also returns the sets of the markers found.
func scanFrom(t *sieves, m string, start int, at *positions, alone bool) (found, sets) {
	var h hits
	i := start
	for {
		// The sieves reject almost every position: pass finds the next
		// one that they let through.
		i = t.pass(m, i)
		if i+8 > len(m) {
			break
		}
		x := le64(m[i : i+8])
		// Only the sieves whose bit passed are looked up. The position
		// after this one looks at markers that begin up to stride-1
		// bytes before it. A marker found here rules out the others for
		// its clearance: the scan resumes after it.
		next := i + stride
		b := t.bit(x)
		if b&1 != 0 {
			next = max(next, h.check(t, m, i, x, t.wide.lookup(hash8(x)), at)+stride-1)
		}
		if b&2 != 0 {
			next = max(next, h.check(t, m, i, uint64(uint32(x)), t.narrow.lookup(hash4(uint32(x))), at)+stride-1)
		}
		i = next
	}
	// Fewer than eight bytes left: only a marker entered under four of
	// them can still have its block here.
	for ; i+4 <= len(m); i += stride {
		b := le32(m[i : i+4])
		if h4 := hash4(b); t.narrow.has(h4) {
			h.check(t, m, i, uint64(b), t.narrow.lookup(h4), at)
		}
	}
	if !alone {
		return h.found, h.sets
	}
	for _, id := range t.alone {
		if i := index(m[start:], markers.pats[id]); i >= 0 {
			h.add(id, start+i, at)
		}
	}
	return h.found, h.sets
}

// hits are the markers a scan found and their sets, which add keeps as
// it goes: a line has few markers, and a loop over the bits found
// afterwards mispredicted their count.
type hits struct {
	found found
	sets  sets
}

// hasAlone reports whether b has a marker searched alone. The Tailer asks
// it of each chunk it reads: one search of 256 KiB, which finds none in
// almost every chunk, costs a fraction of a search of each line.
func (t *sieves) hasAlone(b []byte) bool {
	for _, id := range t.alone {
		if bytes.Contains(b, []byte(markers.pats[id])) {
			return true
		}
	}
	return false
}

// pass returns the first of i, i+stride, ... whose next eight bytes have
// their bit set in either sieve, or the first with fewer than eight bytes
// left. Two positions a round: one branch for both, and the loop's own
// upkeep halved, which is a third of its instructions.
func (t *sieves) pass(m string, i int) int {
	for ; i+8+stride <= len(m); i += 2 * stride {
		x, y := le64(m[i:i+8]), le64(m[i+stride:i+stride+8])
		if t.bit(x)|t.bit(y) != 0 {
			if t.bit(x) != 0 {
				return i
			}
			return i + stride
		}
	}
	if i+8 <= len(m) && t.bit(le64(m[i:i+8])) == 0 {
		i += stride
	}
	return i
}

// bit is not 0 when the eight bytes x have their hash in the wide sieve
// or their first four in the narrow one: both at once, one branch, rarely
// taken, instead of two. It reads hit, 64 KiB, where the sieves' bit sets
// are 8 KiB each: most of it is in L2 rather than L1, but its loads are
// independent from one position to the next and overlap, and a byte load
// is half the instructions of a bit test (BenchmarkScan: about a tenth
// faster).
func (t *sieves) bit(x uint64) uint8 {
	return t.hit[hash8(x)]&1 | t.hit[hash4(uint32(x))]&2
}

// skip is where the scan of m starts: after a process tag of the agent's
// ("[ssm-agent-worker]", "[amazon-ssm-agent]") that begins m, as it
// begins almost every line of the agent's log, or 0. buildSieves keeps
// only the tags in which no marker can begin, so starting after one finds
// the same markers at the same places; it saves a fifth of the positions
// of a typical line.
func (t *sieves) skip(m string) int {
	for i := range t.tags {
		if t.tags[i].begins(m) {
			return len(t.tags[i].tag)
		}
	}
	return 0
}

// skipTag is skip for a message the parser found tag at the start of (a
// Line's tag).
func (t *sieves) skipTag(tag uint8) int {
	if tag == 0 || !t.skips[tag-1] {
		return 0
	}
	return len(processTags[tag-1])
}

// tagWords is a process tag and its bytes as three words, which test for
// the tag at the start of every line with three comparisons instead of a
// call to compare strings: the tags have 16 to 24 bytes (tagWordsOf).
type tagWords struct {
	tag            string
	head, mid, end uint64 // the words at 0, 8 and len-8
}

func tagWordsOf(tag string) tagWords {
	if len(tag) < 16 || len(tag) > 24 {
		panic("agentlog: a process tag must have 16 to 24 bytes: " + tag) // a programming error, at init
	}
	return tagWords{tag: tag, head: le64(tag), mid: le64(tag[8:]), end: le64(tag[len(tag)-8:])}
}

// begins reports whether m begins with the tag.
func (w *tagWords) begins(m string) bool {
	n := len(w.tag)
	return len(m) >= n && le64(m) == w.head && le64(m[8:]) == w.mid && le64(m[n-8:]) == w.end
}

// check adds the markers of entries that m has with their block, x, at i,
// and returns the offset before which no marker can begin that begins
// after i (0 when none was found).
func (h *hits) check(t *sieves, m string, i int, x uint64, entries []entry, at *positions) int {
	clear := 0
	for _, e := range entries {
		if e.block != x {
			continue
		}
		start := i - int(e.off)
		p := markers.pats[e.id]
		if start < 0 || start+len(p) > len(m) || m[start:start+len(p)] != p {
			continue
		}
		h.add(int(e.id), start, at)
		clear = max(clear, start+int(t.clear[e.id]))
	}
	return clear
}

// add puts marker id, found at start, in h and at. Two places of a marker
// can be found out of order when their blocks are visited at the same
// position: at keeps the first.
func (h *hits) add(id, start int, at *positions) {
	bit := uint64(1) << (id % 64)
	if at != nil && (h.found[id/64]&bit == 0 || int32(start) < at[id]) {
		at[id] = int32(start)
	}
	h.found[id/64] |= bit
	h.sets |= setsOfID[id]
}

// index is strings.Index for a marker whose first byte is rare in a line
// ('B' of "Bye."): a search for that byte, which strings.Index does only on
// longer lines, costs half as much on the agent's.
func index(m, p string) int {
	for i := 0; ; {
		j := strings.IndexByte(m[i:], p[0])
		if j < 0 {
			return -1
		}
		i += j
		if strings.HasPrefix(m[i:], p) {
			return i
		}
		i++
	}
}

// le32 is the first four bytes of s (which has at least four) as a word.
func le32(s string) uint32 {
	_ = s[3]
	return uint32(s[0]) | uint32(s[1])<<8 | uint32(s[2])<<16 | uint32(s[3])<<24
}

// le64 is the first eight bytes of s (which has at least eight) as a word.
func le64(s string) uint64 {
	_ = s[7]
	return uint64(s[0]) | uint64(s[1])<<8 | uint64(s[2])<<16 | uint64(s[3])<<24 |
		uint64(s[4])<<32 | uint64(s[5])<<40 | uint64(s[6])<<48 | uint64(s[7])<<56
}

// any reports whether f has a marker of set.
func (f found) any(set found) bool {
	return f[0]&set[0] != 0 || f[1]&set[1] != 0
}

// and is the intersection of f and set.
func (f found) and(set found) found { return found{f[0] & set[0], f[1] & set[1]} }

// first is the lowest id in f, which is not empty.
func (f found) first() int {
	if f[0] != 0 {
		return bits.TrailingZeros64(f[0])
	}
	return 64 + bits.TrailingZeros64(f[1])
}

// or is the union of sets.
func or(sets ...found) found {
	var u found
	for _, s := range sets {
		for i := range u {
			u[i] |= s[i]
		}
	}
	return u
}
