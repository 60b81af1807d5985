#!/usr/bin/env bash
# test-packages.sh [BUILD_DIR]: checks the packages `make package` built in
# BUILD_DIR/packages (default build/packages):
#   - contents, modes, owners, conffiles and scripts of both .debs (dpkg-deb)
#     and both .rpms (rpm -qp), and the architecture of each binary (the CLI
#     /usr/bin/patchd and the full /usr/libexec/patchd/patchd-daemon);
#   - lintian on the .debs: no errors;
#   - systemd-analyze verify on the unit;
#   - the maintainer scripts' systemctl calls for every install, upgrade and
#     removal path of dpkg and rpm, against a recording systemctl (as root);
#   - a real dpkg install, upgrade (to a rebuilt next version with a changed
#     config), remove, reinstall and purge of the amd64 .deb, and an rpm
#     install and erase of the x86_64 .rpm, each in a throwaway root (as root);
#     in the dpkg root, the CLI finds the full binary where the package put it.
# It reports every failure and exits non-zero if there was one.
set -euo pipefail
cd "$(dirname "$0")/.."
build=${1:-build}
pkgs=$build/packages
export LC_ALL=C

failures=0
fail() {
  echo "FAIL: $*" >&2
  failures=$((failures + 1))
}
pass() { echo "ok:   $*"; }
skip() { echo "SKIP: $*"; }

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

one() { # one GLOB: the newest file matching GLOB (make package leaves one)
  local m
  m=$(ls -t $1 2>/dev/null | head -1)
  if [ -z "$m" ]; then
    echo "test-packages.sh: no package matches $1; run make package" >&2
    exit 1
  fi
  echo "$m"
}
deb_amd64=$(one "$pkgs/patchd_*_amd64.deb")
deb_arm64=$(one "$pkgs/patchd_*_arm64.deb")
rpm_amd64=$(one "$pkgs/patchd-*.x86_64.rpm")
rpm_arm64=$(one "$pkgs/patchd-*.aarch64.rpm")

# What every package holds: mode, owner and path, as `tar -tv` and
# `rpm --qf %{FILEMODES:perms}` print them.
expected_entries() {
  cat <<'EOF'
-rwxr-xr-x root/root /usr/bin/patchd
drwxr-xr-x root/root /usr/libexec/patchd
-rwxr-xr-x root/root /usr/libexec/patchd/patchd-daemon
-rw-r--r-- root/root /usr/lib/systemd/system/patchd.service
drwxr-xr-x root/root /etc/patchd
-rw-r--r-- root/root /etc/patchd/patchd.yaml
drwxr-xr-x root/root /etc/patchd/hooks.d
drwxr-xr-x root/root /etc/patchd/hooks.d/pre-patch
drwxr-xr-x root/root /etc/patchd/hooks.d/pre-reboot
drwxr-xr-x root/root /etc/patchd/hooks.d/post-patch
drwx------ root/root /var/lib/patchd
-rw-r--r-- root/root /usr/share/doc/patchd/copyright
-rw-r--r-- root/root /usr/share/doc/patchd/README.md
-rw-r--r-- root/root /usr/share/doc/patchd/patchd.yaml
EOF
  # Files that land later in their own folders are shipped as documentation.
  local d f
  for d in examples prometheus grafana ssm; do
    [ -d "packaging/$d" ] || continue
    while IFS= read -r f; do
      case "$f" in *.go | */testdata/*) continue ;; esac
      if [ -x "$f" ]; then
        echo "-rwxr-xr-x root/root /usr/share/doc/patchd/${f#packaging/}"
      else
        echo "-rw-r--r-- root/root /usr/share/doc/patchd/${f#packaging/}"
      fi
    done < <(find "packaging/$d" -type f)
  done
  for f in docs/*.md; do
    [ -e "$f" ] && echo "-rw-r--r-- root/root /usr/share/doc/patchd/$f"
  done
}

# check_entries NAME LISTING: LISTING has "mode owner/group path" lines.
check_entries() {
  local name=$1 listing=$2 line path before=$failures
  while IFS= read -r line; do
    path=${line#* * }
    if grep -qxF -- "$line" "$listing"; then
      :
    elif grep -q " $path\$" "$listing"; then
      fail "$name: $path is '$(grep " $path\$" "$listing" | head -1)', want '$line'"
    else
      fail "$name: $path is missing"
    fi
  done < <(expected_entries)
  if grep -E '^[^ ]+ [^ ]+ /etc/patchd/hooks.d/[^ ]+/.' "$listing"; then
    fail "$name: ships a file inside hooks.d; examples belong in /usr/share/doc/patchd/examples"
  fi
  if grep -v ' root/root ' "$listing"; then
    fail "$name: entries not owned by root/root (above)"
  fi
  [ "$failures" != "$before" ] || pass "$name: $(wc -l <"$listing") entries, modes and owners as expected"
}

# check_machine NAME FILE ARCH PATH: the ELF machine of FILE (PATH in the
# package) is ARCH.
check_machine() {
  local want got
  case "$3" in
    amd64) want="3e 00" ;;
    arm64) want="b7 00" ;;
  esac
  got=$(od -An -tx1 -j18 -N2 "$2" | tr -s ' ' | sed 's/^ //')
  if [ "$got" = "$want" ]; then
    pass "$1: $4 is an $3 binary"
  else
    fail "$1: $4 has ELF machine '$got', want '$want' ($3)"
  fi
}

# check_builds NAME CLI DAEMON: /usr/bin/patchd is the CLI build and
# /usr/libexec/patchd/patchd-daemon the full one (Go records the build tags
# in the binary; `go version -m` reads them for any architecture).
check_builds() {
  if go version -m "$2" | grep -q $'^\tbuild\t-tags=patchd_cli$'; then
    pass "$1: /usr/bin/patchd is the CLI build (-tags patchd_cli)"
  else
    fail "$1: /usr/bin/patchd is not built with -tags patchd_cli"
  fi
  if go version -m "$3" | grep -q $'^\tbuild\t-tags='; then
    fail "$1: /usr/libexec/patchd/patchd-daemon is built with build tags; it must be the full binary"
  else
    pass "$1: /usr/libexec/patchd/patchd-daemon is the full build"
  fi
}

# --- .deb contents ---------------------------------------------------------
check_deb() {
  local deb=$1 arch=$2 name d
  name=$(basename "$deb")
  d=$work/deb-$arch
  mkdir -p "$d/ctrl" "$d/root"
  [ "$(dpkg-deb -f "$deb" Package)" = patchd ] || fail "$name: Package is not patchd"
  [ "$(dpkg-deb -f "$deb" Architecture)" = "$arch" ] || fail "$name: Architecture is not $arch"
  dpkg-deb -f "$deb" Version | grep -Eq '^[0-9][A-Za-z0-9.+~]*-1$' ||
    fail "$name: Version '$(dpkg-deb -f "$deb" Version)' is not a plain upstream-1 version"
  [ -z "$(dpkg-deb -f "$deb" Depends)" ] || fail "$name: a static binary needs no Depends"

  dpkg-deb -c "$deb" | awk '{p=$6; sub(/^\./,"",p); sub(/\/$/,"",p); if (p!="") print $1, $2, p}' >"$d/list"
  check_entries "$name" "$d/list"
  for f in /usr/share/doc/patchd/changelog.Debian.gz /usr/share/lintian/overrides/patchd; do
    grep -q "^-rw-r--r-- root/root $f\$" "$d/list" || fail "$name: $f missing or not 0644"
  done

  dpkg-deb --ctrl-tarfile "$deb" | tar -x -C "$d/ctrl"
  if [ "$(cat "$d/ctrl/conffiles" 2>/dev/null)" = /etc/patchd/patchd.yaml ]; then
    pass "$name: conffiles is exactly /etc/patchd/patchd.yaml"
  else
    fail "$name: conffiles is '$(cat "$d/ctrl/conffiles" 2>/dev/null)', want /etc/patchd/patchd.yaml"
  fi
  local s src
  for s in preinst:preinstall postinst:postinstall prerm:preremove postrm:postremove; do
    src=packaging/scripts/${s#*:}.sh
    if ! [ -x "$d/ctrl/${s%:*}" ]; then
      fail "$name: maintainer script ${s%:*} missing or not executable"
    elif ! cmp -s "$d/ctrl/${s%:*}" "$src"; then
      fail "$name: ${s%:*} differs from $src"
    fi
  done
  pass "$name: control scripts are packaging/scripts/*.sh"

  dpkg-deb -x "$deb" "$d/root"
  check_machine "$name" "$d/root/usr/bin/patchd" "$arch" /usr/bin/patchd
  check_machine "$name" "$d/root/usr/libexec/patchd/patchd-daemon" "$arch" /usr/libexec/patchd/patchd-daemon
  check_builds "$name" "$d/root/usr/bin/patchd" "$d/root/usr/libexec/patchd/patchd-daemon"
  cmp -s "$d/root/usr/lib/systemd/system/patchd.service" systemd/patchd.service ||
    fail "$name: the unit differs from systemd/patchd.service"
  cmp -s "$d/root/etc/patchd/patchd.yaml" packaging/patchd.yaml ||
    fail "$name: /etc/patchd/patchd.yaml differs from packaging/patchd.yaml"
}

# --- .rpm contents ---------------------------------------------------------
check_rpm() {
  local rpm=$1 arch=$2 rarch name d
  name=$(basename "$rpm")
  d=$work/rpm-$arch
  mkdir -p "$d"
  case "$arch" in amd64) rarch=x86_64 ;; arm64) rarch=aarch64 ;; esac
  [ "$(rpm -qp --qf '%{NAME} %{ARCH} %{RELEASE}' "$rpm")" = "patchd $rarch 1" ] ||
    fail "$name: name/arch/release is '$(rpm -qp --qf '%{NAME} %{ARCH} %{RELEASE}' "$rpm")', want 'patchd $rarch 1'"
  rpm -qp --qf '%{VERSION}' "$rpm" | grep -Eq '^[0-9][A-Za-z0-9.+~]*$' ||
    fail "$name: Version '$(rpm -qp --qf '%{VERSION}' "$rpm")' is not a valid rpm version"

  rpm -qp --qf '[%{FILEMODES:perms} %{FILEUSERNAME}/%{FILEGROUPNAME} %{FILENAMES}\n]' "$rpm" >"$d/list"
  check_entries "$name" "$d/list"
  rpm -qlp "$rpm" >"$d/qlp"
  if diff <(awk '{print $3}' "$d/list") "$d/qlp" >/dev/null; then
    pass "$name: rpm -qlp agrees"
  else
    fail "$name: rpm -qlp lists other files than the header"
  fi
  if [ "$(rpm -qcp "$rpm")" = /etc/patchd/patchd.yaml ]; then
    pass "$name: config files (rpm -qcp) is exactly /etc/patchd/patchd.yaml"
  else
    fail "$name: rpm -qcp is '$(rpm -qcp "$rpm")', want /etc/patchd/patchd.yaml"
  fi
  # %config(noreplace): flags c (config) and n (noreplace).
  local flags
  flags=$(rpm -qp --qf '[%{FILEFLAGS:fflags} %{FILENAMES}\n]' "$rpm" | awk '$2=="/etc/patchd/patchd.yaml"{print $1}')
  case "$flags" in
    *c*n* | *n*c*) pass "$name: /etc/patchd/patchd.yaml is %config(noreplace)" ;;
    *) fail "$name: /etc/patchd/patchd.yaml flags '$flags', want config and noreplace (cn)" ;;
  esac
  local tag src
  for tag in PREIN:preinstall POSTIN:postinstall PREUN:preremove POSTUN:postremove; do
    src=packaging/scripts/${tag#*:}.sh
    rpm -qp --qf "%{${tag%:*}}" "$rpm" >"$d/${tag%:*}"
    # rpm keeps the scriptlet's body (its interpreter is a header field).
    if ! diff -q <(grep -v '^#!' "$src") <(grep -v '^#!' "$d/${tag%:*}") >/dev/null; then
      fail "$name: %${tag%:*} scriptlet differs from $src"
    fi
  done
  rpm --scripts -qp "$rpm" | grep -c 'scriptlet (using /bin/sh)' | grep -qx 4 ||
    fail "$name: want 4 /bin/sh scriptlets, rpm --scripts shows: $(rpm --scripts -qp "$rpm" | grep scriptlet | tr '\n' ';')"
  pass "$name: scriptlets are packaging/scripts/*.sh"

  cp "$rpm" "$d/p.rpm"
  (cd "$d" && rpm2archive p.rpm)
  tar -xzOf "$d/p.rpm.tgz" ./usr/bin/patchd >"$d/patchd"
  tar -xzOf "$d/p.rpm.tgz" ./usr/libexec/patchd/patchd-daemon >"$d/patchd-daemon"
  check_machine "$name" "$d/patchd" "$arch" /usr/bin/patchd
  check_machine "$name" "$d/patchd-daemon" "$arch" /usr/libexec/patchd/patchd-daemon
  check_builds "$name" "$d/patchd" "$d/patchd-daemon"
}

check_deb "$deb_amd64" amd64
check_deb "$deb_arm64" arm64
check_rpm "$rpm_amd64" amd64
check_rpm "$rpm_arm64" arm64

# --- systemd-analyze verify ------------------------------------------------
# verify insists that ExecStart exists, so check a copy that points at the
# built binary; any message (also a "parse error, ignoring") is a failure.
unit=$work/unit/patchd.service
mkdir -p "$(dirname "$unit")"
sed "s|/usr/libexec/patchd/patchd-daemon|$(realpath "$build/patchd-daemon-amd64")|" systemd/patchd.service >"$unit"
grep -q "^ExecStart=$(realpath "$build/patchd-daemon-amd64") run\$" "$unit" ||
  fail "systemd/patchd.service: ExecStart is not /usr/libexec/patchd/patchd-daemon run"
if out=$(systemd-analyze verify "$unit" 2>&1) && [ -z "$out" ]; then
  pass "systemd-analyze verify systemd/patchd.service"
else
  fail "systemd-analyze verify systemd/patchd.service: $out"
fi
if score=$(systemd-analyze security --offline=yes "$unit" 2>/dev/null | grep 'Overall exposure'); then
  echo "info: $score (root hooks need most of the sandbox off; see the unit's comments)"
fi

# --- maintainer scripts: which systemctl calls each path makes -------------
# The shipped scripts (from the .deb and from the .rpm) run in a private
# mount namespace in which /run/systemd/system exists (systemd running) or not,
# /var/lib is a scratch directory, and systemctl is a recorder. Each case is
# the sequence of scripts dpkg or rpm runs for one operation.
scripts_case() { # NAME SYSTEMD(running|offline) EXPECTED-CALLS STEP...   (STEP: "script arg...")
  local name=$1 mode=$2 want=$3
  shift 3
  local c=$work/case
  rm -rf "$c"
  mkdir -p "$c/bin" "$c/varlib" "$c/run"
  cat >"$c/bin/systemctl" <<EOF
#!/bin/sh
echo "\$*" >>"$c/calls"
exit \${FAKE_SYSTEMCTL_RC:-0}
EOF
  chmod 0755 "$c/bin/systemctl"
  : >"$c/calls"
  local step steps=""
  for step in "$@"; do steps+="sh $step || exit \$?;"; done
  if ! CASE_DIR=$c MODE=$mode unshare -m --propagation private sh -c '
      set -e
      mount -t tmpfs tmpfs /run
      [ "$MODE" = running ] && mkdir -p /run/systemd/system
      mount --bind "$CASE_DIR/varlib" /var/lib
      PATH="$CASE_DIR/bin:$PATH"
      '"$steps" >"$c/out" 2>&1; then
    fail "scripts: $name: a script failed: $(cat "$c/out")"
    return
  fi
  local got
  got=$(paste -sd'|' "$c/calls")
  if [ "$got" = "$want" ]; then
    pass "scripts: $name: ${want:-no systemctl calls}"
  else
    fail "scripts: $name: systemctl calls '$got', want '$want'"
  fi
  if [ -e "$c/varlib/patchd/.fresh-install" ]; then
    fail "scripts: $name: left the fresh-install marker behind"
  fi
  CASE_VARLIB=$c/varlib
}

if [ "$(id -u)" = 0 ] && unshare -m --propagation private true 2>/dev/null; then
  for fmt in deb rpm; do
    s=$work/scripts-$fmt
    mkdir -p "$s"
    if [ $fmt = deb ]; then
      for n in preinst postinst prerm postrm; do cp "$work/deb-amd64/ctrl/$n" "$s/$n"; done
    else
      for n in PREIN:preinst POSTIN:postinst PREUN:prerm POSTUN:postrm; do cp "$work/rpm-amd64/${n%:*}" "$s/${n#*:}"; done
    fi
  done
  d=$work/scripts-deb r=$work/scripts-rpm
  u=patchd.service
  scripts_case "deb first install" running "daemon-reload|enable $u|start $u" \
    "$d/preinst install" "$d/postinst configure ''"
  scripts_case "deb reinstall after remove (config files left)" running "daemon-reload|enable $u|start $u" \
    "$d/preinst install 1.0" "$d/postinst configure 1.0"
  scripts_case "deb upgrade" running "daemon-reload|try-restart $u" \
    "$d/prerm upgrade 2.0" "$d/preinst upgrade 1.0" "$d/postrm upgrade 2.0" "$d/postinst configure 1.0"
  scripts_case "deb remove" running "stop $u|disable $u|daemon-reload" \
    "$d/prerm remove" "$d/postrm remove"
  scripts_case "deb purge" running "daemon-reload" \
    "-c 'mkdir -p /var/lib/patchd && : >/var/lib/patchd/ledger.jsonl'" "$d/postrm purge"
  [ ! -e "$CASE_VARLIB/patchd" ] || fail "scripts: deb purge left /var/lib/patchd behind"
  scripts_case "deb first install without systemd running" offline "enable $u" \
    "$d/preinst install" "$d/postinst configure ''"
  scripts_case "deb upgrade without systemd running" offline "" \
    "$d/prerm upgrade 2.0" "$d/preinst upgrade 1.0" "$d/postinst configure 1.0"
  scripts_case "deb remove without systemd running" offline "disable $u" \
    "$d/prerm remove" "$d/postrm remove"
  FAKE_SYSTEMCTL_RC=1 scripts_case "deb first install, every systemctl fails" running "daemon-reload|enable $u|start $u" \
    "$d/preinst install" "$d/postinst configure ''"
  scripts_case "rpm first install" running "daemon-reload|enable $u|start $u" \
    "$r/preinst 1" "$r/postinst 1"
  scripts_case "rpm upgrade" running "daemon-reload|try-restart $u" \
    "$r/preinst 2" "$r/postinst 2" "$r/prerm 1" "$r/postrm 1"
  scripts_case "rpm erase" running "stop $u|disable $u|daemon-reload" \
    "$r/prerm 0" "$r/postrm 0"
  scripts_case "rpm first install without systemd running" offline "enable $u" \
    "$r/preinst 1" "$r/postinst 1"
  FAKE_SYSTEMCTL_RC=1 scripts_case "rpm erase, every systemctl fails" running "stop $u|disable $u|daemon-reload" \
    "$r/prerm 0" "$r/postrm 0"
else
  skip "maintainer script cases need root and unshare(1)"
fi

# --- a real dpkg life cycle in a throwaway root ----------------------------
# dpkg --root with --force-script-chrootless runs the scripts on this host
# with DPKG_ROOT set: they must then enable the unit inside the root
# (systemctl --root) and never touch this host's systemd.
dpkg_root() {
  local root=$work/dpkgroot admin
  admin=$root/var/lib/dpkg
  mkdir -p "$admin/info" "$admin/updates" "$admin/triggers"
  : >"$admin/status"
  : >"$admin/available"
  dp() { dpkg --root="$root" --force-script-chrootless --log=/dev/null "$@" >"$work/dpkg.out" 2>&1 || {
    fail "dpkg $*: $(cat "$work/dpkg.out")"
    return 1
  }; }
  local wants=$root/etc/systemd/system/multi-user.target.wants/patchd.service
  local st
  dp -i "$deb_amd64" || return
  st=$(dpkg-query --admindir="$admin" -W -f '${db:Status-Status}' patchd)
  [ "$st" = installed ] || fail "dpkg: patchd is '$st' after install, want installed"
  local f
  for f in usr/bin/patchd usr/libexec/patchd/patchd-daemon usr/lib/systemd/system/patchd.service \
    etc/patchd/patchd.yaml usr/share/doc/patchd/copyright; do
    [ -f "$root/$f" ] || fail "dpkg install: /$f did not land"
  done
  for f in pre-patch pre-reboot post-patch; do
    [ -d "$root/etc/patchd/hooks.d/$f" ] || fail "dpkg install: hooks.d/$f did not land"
  done
  [ "$(stat -c %a "$root/var/lib/patchd")" = 700 ] || fail "dpkg install: /var/lib/patchd is not 0700"
  [ -L "$wants" ] || fail "dpkg install: the unit was not enabled inside the root"
  [ ! -e "$root/var/lib/patchd/.fresh-install" ] || fail "dpkg install: fresh-install marker left behind"
  # In a chroot (the binaries are static), so that the CLI looks for the
  # full binary where the package put it, not on this host: check is one of
  # the commands it hands over.
  chroot "$root" /usr/bin/patchd check >"$work/check.out" 2>&1 ||
    fail "dpkg install: patchd check on the installed tree failed: $(cat "$work/check.out")"
  pass "dpkg install into a throwaway root: files, modes, unit enabled, patchd check (through patchd-daemon) passes"

  # The operator's changes: a hook, an edited config, some state; and the
  # unit disabled, which an upgrade must respect.
  printf '#!/bin/sh\nexit 0\n' >"$root/etc/patchd/hooks.d/pre-patch/10-drain"
  chmod 0755 "$root/etc/patchd/hooks.d/pre-patch/10-drain"
  echo '# edited by the operator' >>"$root/etc/patchd/patchd.yaml"
  echo '{}' >"$root/var/lib/patchd/cycle.json"
  rm -f "$wants"
  # The next version: same package with a higher version and a changed
  # packaged config, so dpkg has a real conffile conflict to resolve.
  local next=$work/next
  dpkg-deb -R "$deb_amd64" "$next"
  sed -i 's/^Version: \(.*\)$/Version: \1.1/' "$next/DEBIAN/control"
  echo '# changed in the next version' >>"$next/etc/patchd/patchd.yaml"
  (cd "$next" && find . -path ./DEBIAN -prune -o -type f -printf '%P\0' | xargs -0 md5sum >DEBIAN/md5sums)
  dpkg-deb -b --root-owner-group "$next" "$work/next.deb" >/dev/null
  dp -i --force-confdef --force-confold "$work/next.deb" || return
  [ "$(dpkg-query --admindir="$admin" -W -f '${Version}' patchd)" = "$(dpkg-deb -f "$work/next.deb" Version)" ] ||
    fail "dpkg upgrade: the next version is not installed"
  [ ! -e "$wants" ] || fail "dpkg upgrade: re-enabled a unit the operator had disabled"
  grep -q 'edited by the operator' "$root/etc/patchd/patchd.yaml" ||
    fail "dpkg upgrade: the operator's /etc/patchd/patchd.yaml was replaced"
  grep -q 'changed in the next version' "$root/etc/patchd/patchd.yaml.dpkg-dist" ||
    fail "dpkg upgrade: the new packaged config was not left as patchd.yaml.dpkg-dist"
  [ -f "$root/etc/patchd/hooks.d/pre-patch/10-drain" ] || fail "dpkg upgrade: the operator's hook was deleted"
  [ -f "$root/var/lib/patchd/cycle.json" ] || fail "dpkg upgrade: state was deleted"
  pass "dpkg upgrade keeps the operator's config (new one as .dpkg-dist), hooks, state and disabled unit"
  rm -f "$root/etc/patchd/patchd.yaml.dpkg-dist"

  dp --remove patchd || return
  [ ! -e "$root/usr/bin/patchd" ] || fail "dpkg remove: /usr/bin/patchd still there"
  [ ! -e "$root/usr/libexec/patchd" ] || fail "dpkg remove: /usr/libexec/patchd still there"
  [ -f "$root/etc/patchd/patchd.yaml" ] || fail "dpkg remove: /etc/patchd/patchd.yaml was deleted (must stay until purge)"
  [ -f "$root/etc/patchd/hooks.d/pre-patch/10-drain" ] || fail "dpkg remove: the operator's hook was deleted"
  [ -f "$root/var/lib/patchd/cycle.json" ] || fail "dpkg remove: state was deleted (only purge may)"
  pass "dpkg remove keeps config, hooks and state"

  # A reinstall from "config-files" looks like an upgrade to postinst; the
  # unit disabled by the removal must be enabled again.
  dp -i --force-confdef --force-confold "$deb_amd64" || return
  [ -L "$wants" ] || fail "dpkg reinstall after remove: the unit was not enabled again"
  pass "dpkg reinstall after remove enables the unit again"
  dp --remove patchd || return
  [ ! -e "$wants" ] || fail "dpkg remove: the unit is still enabled"

  dp --purge patchd || return
  [ ! -e "$root/var/lib/patchd" ] || fail "dpkg purge: /var/lib/patchd still there"
  [ ! -e "$root/etc/patchd/patchd.yaml" ] || fail "dpkg purge: /etc/patchd/patchd.yaml still there"
  [ -f "$root/etc/patchd/hooks.d/pre-patch/10-drain" ] || fail "dpkg purge: deleted the operator's hook"
  st=$(dpkg-query --admindir="$admin" -W -f '${db:Status-Status}' patchd 2>/dev/null || echo gone)
  [ "$st" = gone ] || [ "$st" = not-installed ] || fail "dpkg purge: patchd is '$st'"
  pass "dpkg purge deletes /var/lib/patchd and the config, keeps the operator's hook"
}
if [ "$(id -u)" = 0 ]; then
  dpkg_root
else
  skip "dpkg install into a throwaway root needs root"
fi

# --- rpm install and erase in a throwaway root ------------------------------
# rpm runs scriptlets chrooted into the root, which has no shell; the
# scriptlets' logic is covered by the cases above, so --noscripts here.
rpm_root() {
  local root=$work/rpmroot
  mkdir -p "$root"
  r() { rpm --root="$root" --nodeps --noscripts "$@" >"$work/rpm.out" 2>&1 || {
    fail "rpm $*: $(cat "$work/rpm.out")"
    return 1
  }; }
  rpm --root="$root" --initdb
  r -i "$rpm_amd64" || return
  local f
  for f in usr/bin/patchd usr/libexec/patchd/patchd-daemon usr/lib/systemd/system/patchd.service etc/patchd/patchd.yaml; do
    [ -f "$root/$f" ] || fail "rpm install: /$f did not land"
  done
  [ "$(stat -c %a "$root/var/lib/patchd")" = 700 ] || fail "rpm install: /var/lib/patchd is not 0700"
  [ "$(stat -c %a "$root/etc/patchd/hooks.d/pre-reboot")" = 755 ] || fail "rpm install: hooks.d/pre-reboot is not 0755"
  echo '# edited by the operator' >>"$root/etc/patchd/patchd.yaml"
  r -e patchd || return
  [ ! -e "$root/usr/bin/patchd" ] || fail "rpm erase: /usr/bin/patchd still there"
  [ ! -e "$root/usr/libexec/patchd" ] || fail "rpm erase: /usr/libexec/patchd still there"
  grep -q 'edited by the operator' "$root/etc/patchd/patchd.yaml.rpmsave" ||
    fail "rpm erase: the operator's config was not kept as patchd.yaml.rpmsave"
  pass "rpm install into a throwaway root lands files and modes; erase keeps the edited config"
}
if [ "$(id -u)" = 0 ]; then
  rpm_root
else
  skip "rpm install into a throwaway root needs root"
fi

# --- lintian ---------------------------------------------------------------
# Errors fail; warnings are printed. Overrides, with reasons:
# packaging/lintian-overrides.
if out=$(lintian --fail-on error "$deb_amd64" "$deb_arm64" 2>&1); then
  pass "lintian: no errors"
else
  fail "lintian found errors"
fi
echo "$out" | grep -v 'running with root privileges' | sed 's/^/  lintian: /' || true

# --- sizes (quoted in the README) ------------------------------------------
echo "sizes:"
for f in "$build"/patchd-{amd64,arm64} "$build"/patchd-daemon-{amd64,arm64} "$deb_amd64" "$deb_arm64" "$rpm_amd64" "$rpm_arm64"; do
  awk -v n="$(stat -c %s "$f")" -v f="$(basename "$f")" 'BEGIN { printf "  %6.2f MiB  %10d bytes  %s\n", n / 1048576, n, f }'
done

if [ "$failures" != 0 ]; then
  echo "test-packages.sh: $failures failure(s)" >&2
  exit 1
fi
echo "test-packages.sh: all checks passed"
