#!/usr/bin/env bash
# test-deps.sh: make sure this host has what `make test` needs, on Debian.
#
# Go is not installed here: a missing or older Go stops with the version
# go.mod names. The Debian packages are checked with dpkg-query (fast, so
# nothing needs a stamp file): as root the missing ones are installed once
# with apt-get, quietly; as another user the exact apt-get line is printed
# and this fails, except for the packages only the root-only system test
# needs, whose absence is reported and left to `make test-e2e` to skip.
set -euo pipefail
cd "$(dirname "$0")/.."

# --- Go ---------------------------------------------------------------------
want=$(awk '$1 == "go" { print $2; exit }' go.mod)
if ! command -v go >/dev/null; then
  echo "make test: Go $want or newer is required and no 'go' is on PATH: install Go $want and put its bin directory on PATH." >&2
  exit 1
fi
# GOTOOLCHAIN=local: report the Go that is installed; never fetch another.
have=$(GOTOOLCHAIN=local go env GOVERSION | sed 's/^go//')
if [ "$(printf '%s\n%s\n' "$want" "$have" | sort -V | head -n1)" != "$want" ]; then
  echo "make test: go.mod needs Go $want; $(command -v go) is Go $have: install Go $want or newer." >&2
  exit 1
fi

# --- Debian packages ----------------------------------------------------------
# Why each is needed:
#   gcc libc6-dev   go test -race (the race detector needs cgo)
#   git             the version stamped into the build (git describe)
#   rpm             make test-package: rpm -qp, rpm2archive, rpm --root
#   lintian         make test-package: lint of the .debs
#   systemd         make test-package: systemd-analyze verify of the unit
#   prometheus      make test-prometheus: promtool and a real server
#   curl            the example hooks' tests call it (through a fake server)
#   util-linux debianutils   unshare (maintainer-script cases), run-parts
#                            (the hooks baseline); both essential on Debian
#   systemd-journal-remote   the journal source's tests: real journal files
#                            for the real journalctl to follow
common=(gcc libc6-dev git rpm lintian systemd systemd-journal-remote prometheus curl util-linux debianutils)
#   debootstrap systemd-container dbus   make test-e2e (root only): a
#                            bookworm root booted with systemd-nspawn
root_only=(debootstrap systemd-container dbus)

if ! command -v dpkg-query >/dev/null; then
  echo "make test: this is not a Debian-based host (no dpkg-query); install the equivalents of: ${common[*]}" >&2
  exit 1
fi

# missing PKG...: the packages not installed, one line.
missing() {
  local p out=()
  for p in "$@"; do
    [ "$(dpkg-query -W -f='${db:Status-Abbrev}' "$p" 2>/dev/null)" = "ii " ] || out+=("$p")
  done
  echo "${out[*]}"
}

if [ "$(id -u)" = 0 ]; then
  need=$(missing "${common[@]}" "${root_only[@]}")
  if [ -n "$need" ]; then
    echo "make test: installing the Debian packages the tests need: $need"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    # shellcheck disable=SC2086 # one word per package
    apt-get install -y -qq --no-install-recommends $need >/dev/null
  fi
  exit 0
fi

need=$(missing "${common[@]}")
if [ -n "$need" ]; then
  echo "make test: missing Debian packages; install them as root, then run make test again:" >&2
  echo "  apt-get install --no-install-recommends $need" >&2
  exit 1
fi
echo "make test: not root: the system test (make test-e2e) and the root-only parts of make test-package are skipped."
need=$(missing "${root_only[@]}")
[ -z "$need" ] || echo "make test: the system test would also need: $need"
