package hoststate

// Parsers of package-manager output. Each takes the command's stdout as it is
// (testdata/ holds real samples and names their sources) and returns counts;
// anything it cannot read is an error, never a silent zero.

import (
	"bufio"
	"fmt"
	"strings"
)

// Pending is the number of packages an upgrade would change now.
type Pending struct {
	All, Security int
}

// ParseAptSimulate counts the "Inst" lines of `apt-get -s dist-upgrade`.
// A line names its candidate's origins in parentheses, e.g.
//
//	Inst liblzma5 [5.4.1-1] (5.4.1-1+deb12u2 Debian-Security:12/oldstable-security [amd64])
//
// and an update is a security one when any origin's suite ends in
// "-security" (Debian's bookworm-security, Ubuntu's jammy-security): the
// same rule unattended-upgrades' default origins use.
func ParseAptSimulate(out string) (Pending, error) {
	var p Pending
	sawHeader := false
	sc := bufio.NewScanner(strings.NewReader(out))
	sc.Buffer(make([]byte, 0, 64*1024), 1024*1024)
	for sc.Scan() {
		line := sc.Text()
		if strings.HasPrefix(line, "Reading package lists") || strings.HasPrefix(line, "Calculating upgrade") ||
			strings.HasPrefix(line, "NOTE: This is only a simulation") {
			sawHeader = true
		}
		if !strings.HasPrefix(line, "Inst ") {
			continue
		}
		p.All++
		if aptLineIsSecurity(line) {
			p.Security++
		}
	}
	if err := sc.Err(); err != nil {
		return Pending{}, err
	}
	if !sawHeader && p.All == 0 {
		return Pending{}, fmt.Errorf("output of apt-get -s has neither a package list header nor Inst lines: %q", head(out))
	}
	return p, nil
}

func aptLineIsSecurity(line string) bool {
	open := strings.IndexByte(line, '(')
	if open < 0 {
		return false
	}
	rest := line[open+1:]
	if end := strings.IndexByte(rest, ')'); end >= 0 {
		rest = rest[:end]
	}
	// "<version> <origin>, <origin> [arch]": the version has no comma.
	if sp := strings.IndexByte(rest, ' '); sp >= 0 {
		rest = rest[sp+1:]
	}
	if br := strings.IndexByte(rest, '['); br >= 0 {
		rest = rest[:br]
	}
	for _, origin := range strings.Split(rest, ",") {
		origin = strings.TrimSpace(origin)
		suite := origin
		if i := strings.LastIndexByte(origin, '/'); i >= 0 {
			suite = origin[i+1:]
		}
		if strings.HasSuffix(suite, "-security") {
			return true
		}
	}
	return false
}

// ParseDNFCheckUpdate counts the updates listed by `dnf check-update` (or
// yum's), which prints one "name.arch  version  repo" row per package after
// an optional metadata line; an "Obsoleting Packages" section that may follow
// repeats packages and is not counted. yum wraps a long name onto its own
// line with the rest indented below it.
func ParseDNFCheckUpdate(out string) (int, error) {
	n := 0
	pendingName := false
	sc := bufio.NewScanner(strings.NewReader(out))
	sc.Buffer(make([]byte, 0, 64*1024), 1024*1024)
	for sc.Scan() {
		line := sc.Text()
		f := strings.Fields(line)
		switch {
		case strings.HasPrefix(line, "Obsoleting Packages"):
			return n, sc.Err()
		case len(f) == 0:
			pendingName = false
		case strings.HasPrefix(line, "Last metadata expiration check"),
			strings.HasPrefix(line, "Loaded plugins"),
			strings.HasPrefix(line, "Security:"):
		case len(f) == 3 && isNameArch(f[0]):
			n++
			pendingName = false
		case len(f) == 1 && isNameArch(f[0]) && !startsWithSpace(line):
			pendingName = true
		case len(f) == 2 && pendingName && startsWithSpace(line):
			n++
			pendingName = false
		}
	}
	return n, sc.Err()
}

func startsWithSpace(s string) bool { return s != "" && (s[0] == ' ' || s[0] == '\t') }

// isNameArch reports whether s looks like "name.arch" (kernel.x86_64).
func isNameArch(s string) bool {
	i := strings.LastIndexByte(s, '.')
	if i <= 0 || i == len(s)-1 {
		return false
	}
	switch s[i+1:] {
	case "x86_64", "aarch64", "noarch", "i686", "i386", "armv7hl", "ppc64le", "s390x", "src":
		return true
	}
	return false
}

// ParseUpdateinfoSecurity counts the distinct packages named by
// `dnf updateinfo list --security` (yum: `updateinfo list security`). A row is
// "<advisory> <severity>/Sec. <nevra>"; one package fixed by two advisories
// is one pending update, as check-update counts it.
func ParseUpdateinfoSecurity(out string) (int, error) {
	pkgs := map[string]bool{}
	sc := bufio.NewScanner(strings.NewReader(out))
	sc.Buffer(make([]byte, 0, 64*1024), 1024*1024)
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) < 3 {
			continue
		}
		for i := 1; i+1 < len(f); i++ {
			if strings.HasSuffix(f[i], "/Sec.") || f[i] == "security" {
				pkgs[f[i+1]] = true
				break
			}
		}
	}
	return len(pkgs), sc.Err()
}

// ParseNeedsRestarting reads `needs-restarting -r` (yum-utils, or the dnf
// plugin). Exit 1 means a reboot is required, but dnf also exits 1 for an
// unknown command (plugin not installed), so exit 1 counts only with the
// tool's own verdict in the output.
func ParseNeedsRestarting(out string, exitCode int) (bool, error) {
	switch exitCode {
	case 0:
		return false, nil
	case 1:
		if strings.Contains(out, "Reboot is required") || strings.Contains(out, "Core libraries or services have been updated") {
			return true, nil
		}
		return false, fmt.Errorf("needs-restarting exited 1 without its reboot verdict (is the needs-restarting plugin installed? dnf-plugins-core / yum-utils): %q", head(out))
	}
	return false, fmt.Errorf("needs-restarting exited %d: %q", exitCode, head(out))
}

// Kernel is one installed kernel package.
type Kernel struct {
	// Release is what `uname -r` prints when it runs.
	Release string
	// Version orders kernels (Debian: the package version; rpm: version and
	// release).
	Version, RPMRelease string
}

// ParseDpkgKernels reads
//
//	dpkg-query -W -f '${Status}\t${Package}\t${Version}\n' 'linux-image-*'
//
// keeping installed packages named linux-image[-unsigned]-<release>; meta
// packages (linux-image-amd64, linux-image-aws) name no release and are
// skipped.
func ParseDpkgKernels(out string) ([]Kernel, error) {
	var ks []Kernel
	for _, line := range strings.Split(out, "\n") {
		if strings.TrimSpace(line) == "" {
			continue
		}
		f := strings.Split(line, "\t")
		if len(f) != 3 {
			return nil, fmt.Errorf("dpkg-query line %q: want status, package and version separated by tabs", line)
		}
		status := strings.Fields(f[0])
		if len(status) != 3 || status[2] != "installed" {
			continue
		}
		rel := strings.TrimPrefix(f[1], "linux-image-")
		rel = strings.TrimPrefix(rel, "unsigned-")
		if rel == "" || !isDigit(rel[0]) {
			continue
		}
		ks = append(ks, Kernel{Release: rel, Version: f[2]})
	}
	return ks, nil
}

// ParseRPMKernels reads `rpm -q --qf '%{VERSION}\t%{RELEASE}\t%{ARCH}\n' kernel`.
func ParseRPMKernels(out string) ([]Kernel, error) {
	var ks []Kernel
	for _, line := range strings.Split(out, "\n") {
		if strings.TrimSpace(line) == "" {
			continue
		}
		f := strings.Split(line, "\t")
		if len(f) != 3 {
			return nil, fmt.Errorf("rpm -q kernel line %q: want version, release and arch separated by tabs", line)
		}
		ks = append(ks, Kernel{Release: f[0] + "-" + f[1] + "." + f[2], Version: f[0], RPMRelease: f[1]})
	}
	return ks, nil
}

// RunningIsLatest reports whether the running kernel is the newest installed
// one. A running kernel with no installed package (removed after an upgrade)
// is not the latest; no installed kernel at all is an error.
func RunningIsLatest(running string, ks []Kernel, rpm bool) (bool, error) {
	if len(ks) == 0 {
		return false, fmt.Errorf("no installed kernel package found (running %s)", running)
	}
	cmp := func(a, b Kernel) int {
		if rpm {
			return CompareRPM(a.Version, a.RPMRelease, b.Version, b.RPMRelease)
		}
		return CompareDebian(a.Version, b.Version)
	}
	newest := ks[0]
	var run *Kernel
	for i, k := range ks {
		if cmp(k, newest) > 0 {
			newest = k
		}
		if k.Release == running {
			run = &ks[i]
		}
	}
	if run == nil {
		return false, nil
	}
	return cmp(*run, newest) >= 0, nil
}

func head(s string) string {
	s = strings.TrimSpace(s)
	if len(s) > 300 {
		return s[:300] + "…"
	}
	return s
}
