package agentlog

import "strings"

// markerTable finds every marker of the classifier in one pass over a line:
// a table of the byte pairs that begin a marker rejects almost every
// position with one lookup, so the cost is a few nanoseconds per byte
// whatever the number of markers, instead of one substring search each.
type markerTable struct {
	pats []string
	ids  map[string]int
	// bucket[pair] is 1 + the index in buckets of the markers beginning
	// with that byte pair, 0 for none.
	bucket  [1 << 16]uint8
	buckets [][]uint8
	// pairs has a bit per byte pair that begins a marker: 8 KiB, so the
	// test for almost every position stays in the L1 cache (bucket, at
	// 64 KiB, would not).
	pairs [1 << 16 / 64]uint64
}

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
		if len(p) < 2 {
			panic("agentlog: marker shorter than two bytes: " + p) // a programming error, at init
		}
		id, ok := markers.ids[p]
		if !ok {
			id = len(markers.pats)
			if id >= maxMarkers {
				panic("agentlog: too many markers") // a programming error, at init
			}
			markers.pats = append(markers.pats, p)
			markers.ids[p] = id
			k := uint16(p[0])<<8 | uint16(p[1])
			markers.pairs[k>>6] |= 1 << (k & 63)
			if markers.bucket[k] == 0 {
				markers.buckets = append(markers.buckets, nil)
				markers.bucket[k] = uint8(len(markers.buckets))
			}
			b := markers.bucket[k] - 1
			markers.buckets[b] = append(markers.buckets[b], uint8(id))
		}
		f[id/64] |= 1 << (id % 64)
	}
	return f
}

// scan returns the markers m contains.
func scan(m string) found {
	var f found
	for i := 0; i+1 < len(m); i++ {
		k := uint16(m[i])<<8 | uint16(m[i+1])
		if markers.pairs[k>>6]&(1<<(k&63)) == 0 {
			continue
		}
		for _, id := range markers.buckets[markers.bucket[k]-1] {
			if strings.HasPrefix(m[i:], markers.pats[id]) {
				f[id/64] |= 1 << (id % 64)
			}
		}
	}
	return f
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
