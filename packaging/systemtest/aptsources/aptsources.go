// Package aptsources finds the Debian archive this host's apt is configured
// with, so that the system test's debootstrap fetches from where the host's
// own packages come from (a local mirror or proxy on a build machine) and
// the repository names no download host of its own.
package aptsources

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
)

// Files are where apt reads its sources: the one-line format in
// sources.list and sources.list.d/*.list, deb822 in sources.list.d/*.sources.
// Files with other names (foo.list.disabled, .save) are ignored, as apt
// ignores them.
func Files(etcApt string) []string {
	files := []string{filepath.Join(etcApt, "sources.list")}
	for _, pattern := range []string{"*.list", "*.sources"} {
		m, _ := filepath.Glob(filepath.Join(etcApt, "sources.list.d", pattern))
		sort.Strings(m)
		files = append(files, m...)
	}
	return files
}

// ErrNone says that no source of Debian packages for a release was found.
var ErrNone = errors.New("no Debian archive found")

// DebianArchive returns the first archive URI of a binary ("deb") source of
// the given release (bookworm: the release's own suite, not -updates or
// -security) in the apt sources under etcApt (normally /etc/apt). When
// there is none it names the files it read and how to fix it.
func DebianArchive(etcApt, release string) (string, error) {
	files := Files(etcApt)
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			continue
		}
		var uri string
		if strings.HasSuffix(f, ".sources") {
			uri = fromDeb822(string(data), release)
		} else {
			uri = fromOneLine(string(data), release)
		}
		if uri != "" {
			return uri, nil
		}
	}
	return "", fmt.Errorf("%w for %s in %s: add the host's Debian mirror there (a deb line or a deb822 entry with Suites: %s), or name one in PATCHD_E2E_MIRROR",
		ErrNone, release, strings.Join(files, ", "), release)
}

// fromOneLine reads "deb [options] uri suite components..." lines.
func fromOneLine(data, release string) string {
	for _, line := range strings.Split(data, "\n") {
		if i := strings.IndexByte(line, '#'); i >= 0 {
			line = line[:i]
		}
		fields := strings.Fields(line)
		if len(fields) == 0 || fields[0] != "deb" {
			continue
		}
		fields = fields[1:]
		if len(fields) > 0 && strings.HasPrefix(fields[0], "[") {
			// Options run up to the field that ends in "]".
			for len(fields) > 0 && !strings.HasSuffix(fields[0], "]") {
				fields = fields[1:]
			}
			if len(fields) > 0 {
				fields = fields[1:]
			}
		}
		if len(fields) >= 2 && fields[1] == release {
			return fields[0]
		}
	}
	return ""
}

// fromDeb822 reads stanzas of "Key: value" lines separated by blank lines.
func fromDeb822(data, release string) string {
	for _, stanza := range strings.Split(strings.ReplaceAll(data, "\r\n", "\n"), "\n\n") {
		fields := map[string]string{}
		var last string
		for _, line := range strings.Split(stanza, "\n") {
			if strings.HasPrefix(line, "#") || strings.TrimSpace(line) == "" {
				continue
			}
			if (line[0] == ' ' || line[0] == '\t') && last != "" {
				fields[last] += " " + strings.TrimSpace(line) // a folded value
				continue
			}
			k, v, ok := strings.Cut(line, ":")
			if !ok {
				continue
			}
			last = strings.ToLower(strings.TrimSpace(k))
			fields[last] = strings.TrimSpace(v)
		}
		if strings.EqualFold(fields["enabled"], "no") ||
			!contains(strings.Fields(fields["types"]), "deb") ||
			!contains(strings.Fields(fields["suites"]), release) {
			continue
		}
		if uris := strings.Fields(fields["uris"]); len(uris) > 0 {
			return uris[0]
		}
	}
	return ""
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}
