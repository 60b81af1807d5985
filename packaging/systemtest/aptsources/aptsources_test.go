package aptsources

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func write(t *testing.T, etc string, files map[string]string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Join(etc, "sources.list.d"), 0o755); err != nil {
		t.Fatal(err)
	}
	for name, body := range files {
		if err := os.WriteFile(filepath.Join(etc, name), []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

func TestDebianArchive(t *testing.T) {
	// Debian 12's cloud images: deb822 only, sources.list absent.
	debian12 := `Types: deb
# http://snapshot.debian.org/archive/debian/20250520T000000Z
URIs: http://mirror.example.internal/debian
Suites: bookworm bookworm-updates
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg

Types: deb
URIs: http://mirror.example.internal/debian-security
Suites: bookworm-security
Components: main
`
	cases := []struct {
		name  string
		files map[string]string
		want  string
	}{
		{"deb822", map[string]string{"sources.list.d/debian.sources": debian12}, "http://mirror.example.internal/debian"},
		{"one-line with options and comments", map[string]string{"sources.list": "# deb http://old/debian bookworm main\n" +
			"deb-src http://src.example/debian bookworm main\n" +
			"deb [arch=amd64 signed-by=/k.gpg] http://proxy:3142/debian-mirror bookworm main # via the proxy\n"},
			"http://proxy:3142/debian-mirror"},
		{"security and updates are not the release", map[string]string{"sources.list": "deb http://sec/debian-security bookworm-security main\n",
			"sources.list.d/debian.sources": debian12}, "http://mirror.example.internal/debian"},
		{"a disabled entry and a renamed file are skipped", map[string]string{
			"sources.list.d/a.sources":                  "Enabled: no\nTypes: deb\nURIs: http://off/debian\nSuites: bookworm\n",
			"sources.list.d/b.list.disabled-by-someone": "deb http://renamed/debian bookworm main\n",
			"sources.list.d/c.list":                     "deb http://on/debian bookworm main\n"},
			"http://on/debian"},
		{"sources.list first", map[string]string{"sources.list": "deb http://first/debian bookworm main\n",
			"sources.list.d/debian.sources": debian12}, "http://first/debian"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			etc := t.TempDir()
			write(t, etc, c.files)
			got, err := DebianArchive(etc, "bookworm")
			if err != nil || got != c.want {
				t.Fatalf("DebianArchive = %q, %v; want %q", got, err, c.want)
			}
		})
	}
}

func TestDebianArchiveNoneSaysWhereAndHow(t *testing.T) {
	etc := t.TempDir()
	write(t, etc, map[string]string{"sources.list.d/trixie.sources": "Types: deb\nURIs: http://m/debian\nSuites: trixie\n"})
	_, err := DebianArchive(etc, "bookworm")
	if !errors.Is(err, ErrNone) {
		t.Fatalf("err = %v, want ErrNone", err)
	}
	for _, want := range []string{filepath.Join(etc, "sources.list"), "trixie.sources", "PATCHD_E2E_MIRROR", "Suites: bookworm"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not mention %q", err, want)
		}
	}
}
