#!/bin/sh
# patchd pre-remove. One script for both package formats:
#   dpkg prerm: remove | upgrade <new-version> | deconfigure ... | failed-upgrade <old-version>
#   rpm %preun: 0 (erase) | 1+ (upgrade: the new version is already installed)
# Only a removal stops and disables the service; during an upgrade patchd
# keeps running (it may be inside a patch cycle) and postinstall restarts it.
set -e

root="${DPKG_ROOT:-}"
unit=patchd.service

have_systemctl() { command -v systemctl >/dev/null 2>&1; }
running() { [ -z "$root" ] && [ -d /run/systemd/system ] && have_systemctl; }

case "$1" in
  remove | 0)
    if running; then
      systemctl stop "$unit" || echo "patchd: systemctl stop $unit failed" >&2
    fi
    if have_systemctl; then
      if [ -n "$root" ]; then
        systemctl --root="$root" disable "$unit" || echo "patchd: systemctl --root=$root disable $unit failed" >&2
      else
        systemctl disable "$unit" || echo "patchd: systemctl disable $unit failed" >&2
      fi
    fi
    ;;
esac
exit 0
