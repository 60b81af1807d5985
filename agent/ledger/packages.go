// Package ledger records what each patch cycle changed on the host: a
// snapshot of the installed packages when the cycle opens and when it
// closes, their difference, and one JSON line per cycle in ledger.jsonl.
package ledger

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"os/exec"
	"sort"
	"strings"
)

// Package is one installed package.
type Package struct {
	Name    string `json:"name"`
	Version string `json:"version"`
	Arch    string `json:"arch,omitempty"`
}

// key identifies a package across snapshots: the same name may be installed
// for two architectures (multiarch, multilib).
func (p Package) key() string { return p.Name + "\x00" + p.Arch }

// Snapshotter lists the installed packages.
type Snapshotter interface {
	Snapshot(ctx context.Context) ([]Package, error)
}

// Command is a Snapshotter that runs a package manager's query and parses
// lines of name, version and architecture separated by tabs.
type Command struct {
	Argv []string
}

// Dpkg and RPM query formats print one package per line: name, version and
// architecture, tab-separated. rpm's version includes the epoch when set so
// that an epoch bump shows as an upgrade.
var (
	Dpkg = Command{Argv: []string{"dpkg-query", "-W", "-f=${Package}\t${Version}\t${Architecture}\n"}}
	RPM  = Command{Argv: []string{"rpm", "-qa", "--qf", "%{NAME}\t%|EPOCH?{%{EPOCH}:}|%{VERSION}-%{RELEASE}\t%{ARCH}\n"}}
)

// Detect returns the package query of this host, or nil when it has neither
// dpkg nor rpm (the ledger then records no package changes).
func Detect() Snapshotter {
	// dpkg first: Debian hosts sometimes carry an rpm binary for tooling,
	// RPM hosts almost never carry dpkg-query.
	for _, c := range []Command{Dpkg, RPM} {
		if _, err := exec.LookPath(c.Argv[0]); err == nil {
			return c
		}
	}
	return nil
}

// Snapshot runs the query.
func (c Command) Snapshot(ctx context.Context) ([]Package, error) {
	if len(c.Argv) == 0 {
		return nil, fmt.Errorf("package snapshot: no command configured")
	}
	cmd := exec.CommandContext(ctx, c.Argv[0], c.Argv[1:]...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return nil, fmt.Errorf("package snapshot %s: %w: %s", c.Argv[0], err, strings.TrimSpace(stderr.String()))
	}
	return Parse(out), nil
}

// Parse reads tab-separated name, version, arch lines. Lines without a
// version (dpkg lists removed-but-configured packages with an empty one) are
// not installed and are left out.
func Parse(out []byte) []Package {
	var pkgs []Package
	sc := bufio.NewScanner(bytes.NewReader(out))
	sc.Buffer(make([]byte, 64*1024), 1024*1024)
	for sc.Scan() {
		f := strings.Split(sc.Text(), "\t")
		if len(f) < 2 || strings.TrimSpace(f[0]) == "" || strings.TrimSpace(f[1]) == "" {
			continue
		}
		p := Package{Name: strings.TrimSpace(f[0]), Version: strings.TrimSpace(f[1])}
		if len(f) > 2 {
			p.Arch = strings.TrimSpace(f[2])
		}
		pkgs = append(pkgs, p)
	}
	sort.Slice(pkgs, func(i, j int) bool { return pkgs[i].key() < pkgs[j].key() })
	return pkgs
}

// Upgrade is a package whose version changed (up or down).
type Upgrade struct {
	Name string `json:"name"`
	Arch string `json:"arch,omitempty"`
	From string `json:"from"`
	To   string `json:"to"`
}

// Changes is the difference between two snapshots.
type Changes struct {
	Installed []Package `json:"installed,omitempty"`
	Upgraded  []Upgrade `json:"upgraded,omitempty"`
	Removed   []Package `json:"removed,omitempty"`
}

// Counts returns the number of changes by kind, for the metric.
func (c Changes) Counts() map[string]int {
	return map[string]int{"installed": len(c.Installed), "upgraded": len(c.Upgraded), "removed": len(c.Removed)}
}

// Diff compares two snapshots. Results are sorted by name.
func Diff(before, after []Package) Changes {
	old := make(map[string]Package, len(before))
	for _, p := range before {
		old[p.key()] = p
	}
	var ch Changes
	seen := make(map[string]bool, len(after))
	for _, p := range after {
		seen[p.key()] = true
		o, ok := old[p.key()]
		switch {
		case !ok:
			ch.Installed = append(ch.Installed, p)
		case o.Version != p.Version:
			ch.Upgraded = append(ch.Upgraded, Upgrade{Name: p.Name, Arch: p.Arch, From: o.Version, To: p.Version})
		}
	}
	for _, p := range before {
		if !seen[p.key()] {
			ch.Removed = append(ch.Removed, p)
		}
	}
	sort.Slice(ch.Installed, func(i, j int) bool { return ch.Installed[i].key() < ch.Installed[j].key() })
	sort.Slice(ch.Upgraded, func(i, j int) bool {
		return ch.Upgraded[i].Name+ch.Upgraded[i].Arch < ch.Upgraded[j].Name+ch.Upgraded[j].Arch
	})
	sort.Slice(ch.Removed, func(i, j int) bool { return ch.Removed[i].key() < ch.Removed[j].key() })
	return ch
}
