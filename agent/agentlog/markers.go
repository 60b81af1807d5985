package agentlog

import "strings"

// markerTable finds every marker of the classifier in one pass over a line,
// looking at every third position only (a stride-3 variant of Wu-Manber):
// each marker is entered under the byte pairs at its offsets 0, 1 and 2, so
// wherever it starts, one of those pairs begins at a position the scan
// visits. A bit set of the entered pairs rejects almost every position
// with one lookup that stays in the L1 cache. The cost is under a
// nanosecond per byte whatever the number of markers, instead of one
// substring search per marker.
type markerTable struct {
	pats []string
	ids  map[string]int
	// bucket[pair] is 1 + the index in buckets of the markers entered under
	// that byte pair, 0 for none.
	bucket  [1 << 16]uint16
	buckets [][]entry
	// pairs has a bit per entered pair: 8 KiB.
	pairs [1 << 16 / 64]uint64
	// quads has a bit per hash of the four bytes a marker has from each
	// offset its pairs are entered at: a second sieve, as common pairs
	// ("in", "re") pass the first at a third of all positions. A pair
	// entered where its marker has no four bytes left (a marker of four or
	// five bytes) is in short, and its positions skip this sieve.
	quads [1 << 16 / 64]uint64
	short [1 << 16 / 64]uint64
}

// quad is the hash of four bytes that quads is indexed by.
func quad(x uint32) uint32 { return (x * 0x9E3779B1) >> 16 }

// entry is a marker entered under a pair. Most positions whose pair is
// entered are no marker at all (pairs like "in" are common), so the first
// four bytes of the marker are compared as one word before the whole.
type entry struct {
	head uint32 // the marker's first four bytes, little-endian
	id   uint8
	off  uint8 // offset of the pair in the marker
}

// stride is how far the scan moves; every marker must be longer than it.
const stride = 3

// found is the set of markers a line contains.
type found [3]uint64

const maxMarkers = 64 * len(found{})

var markers markerTable

// reg registers patterns and returns their set.
func reg(pats ...string) found {
	if markers.ids == nil {
		markers.ids = map[string]int{}
	}
	var f found
	for _, p := range pats {
		if len(p) <= stride {
			panic("agentlog: marker too short for the scan: " + p) // a programming error, at init
		}
		id, ok := markers.ids[p]
		if !ok {
			id = len(markers.pats)
			if id >= maxMarkers {
				panic("agentlog: too many markers") // a programming error, at init
			}
			markers.pats = append(markers.pats, p)
			markers.ids[p] = id
			for off := 0; off < stride; off++ {
				k := uint16(p[off])<<8 | uint16(p[off+1])
				markers.pairs[k>>6] |= 1 << (k & 63)
				if off+4 <= len(p) {
					q := quad(le32(p[off:]))
					markers.quads[q>>6] |= 1 << (q & 63)
				} else {
					markers.short[k>>6] |= 1 << (k & 63)
				}
				if markers.bucket[k] == 0 {
					markers.buckets = append(markers.buckets, nil)
					markers.bucket[k] = uint16(len(markers.buckets))
				}
				b := markers.bucket[k] - 1
				markers.buckets[b] = append(markers.buckets[b], entry{head: le32(p), id: uint8(id), off: uint8(off)})
			}
		}
		f[id/64] |= 1 << (id % 64)
	}
	return f
}

// scan returns the markers m contains.
func scan(m string) found {
	var f found
	for i := 0; i+1 < len(m); i += stride {
		k := uint16(m[i])<<8 | uint16(m[i+1])
		if markers.pairs[k>>6]&(1<<(k&63)) == 0 {
			continue
		}
		if i+4 <= len(m) && markers.short[k>>6]&(1<<(k&63)) == 0 {
			if q := quad(le32(m[i:])); markers.quads[q>>6]&(1<<(q&63)) == 0 {
				continue
			}
		}
		for _, e := range markers.buckets[markers.bucket[k]-1] {
			start := i - int(e.off)
			if start < 0 || start+4 > len(m) || le32(m[start:]) != e.head {
				continue
			}
			if id := int(e.id); strings.HasPrefix(m[start+4:], markers.pats[id][4:]) {
				f[id/64] |= 1 << (id % 64)
			}
		}
	}
	return f
}

// le32 is the first four bytes of s (which has at least four) as a word.
func le32(s string) uint32 {
	_ = s[3]
	return uint32(s[0]) | uint32(s[1])<<8 | uint32(s[2])<<16 | uint32(s[3])<<24
}

// any reports whether f has a marker of set.
func (f found) any(set found) bool {
	return f[0]&set[0] != 0 || f[1]&set[1] != 0 || f[2]&set[2] != 0
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
