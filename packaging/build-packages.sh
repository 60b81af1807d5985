#!/usr/bin/env bash
# build-packages.sh BUILD_DIR VERSION: the .deb and .rpm for amd64 and arm64
# into BUILD_DIR/packages, from the binaries BUILD_DIR/patchd-{amd64,arm64}
# (the CLI) and BUILD_DIR/patchd-daemon-{amd64,arm64} (the full binary)
# (`make package` builds those first and runs this).
set -euo pipefail
cd "$(dirname "$0")/.."
build=${1:?usage: build-packages.sh BUILD_DIR VERSION}
version=${2:?usage: build-packages.sh BUILD_DIR VERSION}

# git describe gives e.g. 1.2.0-3-gabc1234-dirty or, on an untagged tree,
# 0.0.0~abc1234-dirty. A hyphen is a revision separator in deb and invalid in
# an rpm version; dots keep the order (1.2.0.3.gabc1234 > 1.2.0) in both.
version=${version//-/.}
# Without git (a source tarball) describe gives nothing: 0.0.0~ is still a
# version, but name it.
if [[ $version == *~ ]]; then version+=unknown; fi
if ! [[ $version =~ ^[0-9][A-Za-z0-9.+~]*$ ]]; then
  echo "build-packages.sh: version '$version' is not a valid deb/rpm version; tag the tree like v1.2.3 or set PKGVER" >&2
  exit 1
fi

# Everything is built in a private directory and only the finished packages
# are moved into BUILD_DIR/packages (rename: readers never see half a file),
# so a test reading the packages is not hurt by a concurrent make package.
mkdir -p "$build"
tmp=$(mktemp -d "$build/.packages.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
out=$tmp/out
doc=$tmp/doc
mkdir -p "$out"

# /usr/share/doc/patchd. The example hooks, alert rules, dashboard and SSM
# documents come from their own folders when those exist, so the package
# builds whatever has landed.
install -d -m 0755 "$doc"
install -m 0644 packaging/copyright README.md packaging/patchd.yaml "$doc/"
for d in examples prometheus grafana ssm; do
  if [ -d "packaging/$d" ]; then
    cp -R "packaging/$d" "$doc/$d"
  fi
done
# The README links into docs/; ship it beside the README so the links work.
if [ -d docs ]; then
  install -d -m 0755 "$doc/docs"
  install -m 0644 docs/*.md "$doc/docs/"
fi
# Debian wants a changelog in every binary package; the project's history is
# its git log, so the entry names the commit. Dated by that commit, so that
# the same tree gives the same package.
changelog=$tmp/changelog.Debian.gz
commit_date=$(git log -1 --format=%ct 2>/dev/null || date +%s)
{
  printf 'patchd (%s-1) unstable; urgency=medium\n\n' "$version"
  printf '  * Built from git %s; see the project history for changes.\n\n' \
    "$(git describe --tags --always --dirty 2>/dev/null || echo unknown)"
  printf ' -- patchd maintainers <patchd@users.noreply.github.com>  %s\n' \
    "$(LC_ALL=C date -u -R -d "@$commit_date")"
} | gzip -9n >"$changelog"
chmod 0644 "$changelog"

# Only documents: no Go sources or test fixtures, no symlinks out of the tree.
find "$doc" \( -name '*.go' -o -name testdata -o -type l \) -prune -exec rm -rf {} +
find "$doc" -type d -exec chmod 0755 {} +
find "$doc" -type f -perm -u+x -exec chmod 0755 {} +
find "$doc" -type f ! -perm -u+x -exec chmod 0644 {} +

# nfpm expands variables in a few fields only, not in contents' sources, so
# the variables of nfpm.yaml are filled in here, one config per arch.
for arch in amd64 arm64; do
  for b in patchd patchd-daemon; do
    if ! [ -x "$build/$b-$arch" ]; then
      echo "build-packages.sh: $build/$b-$arch is missing; build it with make $build/$b-$arch" >&2
      exit 1
    fi
    cp "$build/$b-$arch" "$tmp/$b-$arch"
  done
  bin=$tmp/patchd-$arch
  daemon=$tmp/patchd-daemon-$arch
  conf=$tmp/nfpm-$arch.yaml
  sed -e "s|\${GOARCH}|$arch|g" -e "s|\${PKGVER}|$version|g" \
    -e "s|\${PATCHD_BIN}|$bin|g" -e "s|\${PATCHD_DAEMON_BIN}|$daemon|g" -e "s|\${PATCHD_DOC}|$doc|g" \
    -e "s|\${PATCHD_CHANGELOG}|$changelog|g" nfpm.yaml >"$conf"
  if grep -n '\${' "$conf" >&2; then
    echo "build-packages.sh: nfpm.yaml uses a variable this script does not fill in" >&2
    exit 1
  fi
  for packager in deb rpm; do
    if ! log=$(go tool nfpm package --config "$conf" --packager "$packager" --target "$out/" 2>&1); then
      echo "$log" >&2
      exit 1
    fi
  done
done

mkdir -p "$build/packages"
new=()
for f in "$out"/*; do
  mv -f "$f" "$build/packages/"
  new+=("$(basename "$f")")
done
# Packages of earlier versions go; only this build's set stays.
for f in "$build"/packages/patchd[_-]*; do
  case " ${new[*]} " in *" $(basename "$f") "*) ;; *) rm -f "$f" ;; esac
done
ls -l "$build/packages"
