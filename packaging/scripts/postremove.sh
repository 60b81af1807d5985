#!/bin/sh
# patchd post-remove. One script for both package formats:
#   dpkg postrm: remove | purge | upgrade <new-version> | disappear ... |
#                failed-upgrade <old-version> | abort-install [<old-version>] | abort-upgrade <old-version>
#   rpm %postun: 0 (erase) | 1+ (upgrade)
# A purge (dpkg only; rpm has none) deletes patchd's state, ledger and log
# offsets. User hooks under /etc/patchd/hooks.d are never deleted: dpkg
# keeps directories that still hold files it does not own.
set -e

root="${DPKG_ROOT:-}"

running() { [ -z "$root" ] && [ -d /run/systemd/system ] && command -v systemctl >/dev/null 2>&1; }

case "$1" in
  purge)
    rm -rf "$root/var/lib/patchd"
    ;;
  abort-install)
    rm -f "$root/var/lib/patchd/.fresh-install"
    ;;
esac
case "$1" in
  remove | purge | 0)
    # The unit file is gone; let the manager forget it.
    if running; then systemctl daemon-reload || true; fi
    ;;
esac
exit 0
