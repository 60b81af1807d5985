package hoststate

// Version ordering of the two package formats, so that "newest installed
// kernel" means what dpkg and rpm mean by it (6.1.0-10 < 6.1.0-9 as strings,
// but not as versions). The algorithms follow dpkg's lib/dpkg/version.c
// (verrevcmp) and rpm's rpmio/rpmvercmp.c, as documented in deb-version(7)
// and rpm's "Dependencies: version comparison" notes.

import (
	"strconv"
	"strings"
)

// debOrder gives a character's weight in dpkg's comparison of non-digit
// parts: '~' sorts before everything, even the end of the string; letters
// before other characters.
func debOrder(c byte, ok bool) int {
	switch {
	case !ok:
		return 0
	case c == '~':
		return -1
	case isDigit(c):
		return 0
	case isAlpha(c):
		return int(c)
	default:
		return int(c) + 256
	}
}

func isDigit(c byte) bool { return c >= '0' && c <= '9' }
func isAlpha(c byte) bool { return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') }

// debVerRevCmp compares one upstream version or revision part.
func debVerRevCmp(a, b string) int {
	i, j := 0, 0
	for i < len(a) || j < len(b) {
		firstDiff := 0
		for (i < len(a) && !isDigit(a[i])) || (j < len(b) && !isDigit(b[j])) {
			ac := debOrder(at(a, i))
			bc := debOrder(at(b, j))
			if ac != bc {
				return sign(ac - bc)
			}
			i++
			j++
		}
		for i < len(a) && a[i] == '0' {
			i++
		}
		for j < len(b) && b[j] == '0' {
			j++
		}
		for i < len(a) && isDigit(a[i]) && j < len(b) && isDigit(b[j]) {
			if firstDiff == 0 {
				firstDiff = int(a[i]) - int(b[j])
			}
			i++
			j++
		}
		if i < len(a) && isDigit(a[i]) {
			return 1
		}
		if j < len(b) && isDigit(b[j]) {
			return -1
		}
		if firstDiff != 0 {
			return sign(firstDiff)
		}
	}
	return 0
}

func at(s string, i int) (byte, bool) {
	if i < len(s) {
		return s[i], true
	}
	return 0, false
}

func sign(n int) int {
	switch {
	case n < 0:
		return -1
	case n > 0:
		return 1
	}
	return 0
}

// splitDeb splits [epoch:]upstream[-revision].
func splitDeb(v string) (epoch int, upstream, revision string) {
	if i := strings.IndexByte(v, ':'); i >= 0 {
		if n, err := strconv.Atoi(v[:i]); err == nil {
			epoch = n
		}
		v = v[i+1:]
	}
	if i := strings.LastIndexByte(v, '-'); i >= 0 {
		return epoch, v[:i], v[i+1:]
	}
	return epoch, v, ""
}

// CompareDebian orders two Debian package versions as dpkg does: <0, 0, >0.
func CompareDebian(a, b string) int {
	ea, ua, ra := splitDeb(a)
	eb, ub, rb := splitDeb(b)
	if ea != eb {
		return sign(ea - eb)
	}
	if c := debVerRevCmp(ua, ub); c != 0 {
		return c
	}
	return debVerRevCmp(ra, rb)
}

// rpmVerCmp orders two rpm version (or release) strings as rpmvercmp does:
// alternating runs of digits and letters, separators ignored, '~' sorts
// before anything and '^' after the end but before anything else.
func rpmVerCmp(a, b string) int {
	if a == b {
		return 0
	}
	i, j := 0, 0
	isAlnum := func(c byte) bool { return isDigit(c) || isAlpha(c) }
	for i < len(a) || j < len(b) {
		for i < len(a) && !isAlnum(a[i]) && a[i] != '~' && a[i] != '^' {
			i++
		}
		for j < len(b) && !isAlnum(b[j]) && b[j] != '~' && b[j] != '^' {
			j++
		}
		// Tilde: older than anything, also the end.
		at, bt := i < len(a) && a[i] == '~', j < len(b) && b[j] == '~'
		if at || bt {
			if !at {
				return 1
			}
			if !bt {
				return -1
			}
			i++
			j++
			continue
		}
		// Caret: newer than the end, older than any other part.
		ac, bc := i < len(a) && a[i] == '^', j < len(b) && b[j] == '^'
		if ac || bc {
			if i >= len(a) {
				return -1
			}
			if j >= len(b) {
				return 1
			}
			if !ac {
				return 1
			}
			if !bc {
				return -1
			}
			i++
			j++
			continue
		}
		if i >= len(a) || j >= len(b) {
			break
		}
		si, sj := i, j
		numeric := isDigit(a[i])
		if numeric {
			for i < len(a) && isDigit(a[i]) {
				i++
			}
			for j < len(b) && isDigit(b[j]) {
				j++
			}
		} else {
			for i < len(a) && isAlpha(a[i]) {
				i++
			}
			for j < len(b) && isAlpha(b[j]) {
				j++
			}
		}
		pa, pb := a[si:i], b[sj:j]
		if len(pb) == 0 {
			// Different kinds of segment: a number is newer than letters.
			if numeric {
				return 1
			}
			return -1
		}
		if numeric {
			pa = strings.TrimLeft(pa, "0")
			pb = strings.TrimLeft(pb, "0")
			if len(pa) != len(pb) {
				return sign(len(pa) - len(pb))
			}
		}
		if c := strings.Compare(pa, pb); c != 0 {
			return c
		}
	}
	switch {
	case i >= len(a) && j >= len(b):
		return 0
	case i >= len(a):
		return -1
	}
	return 1
}

// CompareRPM orders two kernels by version, then release, as rpm does.
func CompareRPM(verA, relA, verB, relB string) int {
	if c := rpmVerCmp(verA, verB); c != 0 {
		return c
	}
	return rpmVerCmp(relA, relB)
}
