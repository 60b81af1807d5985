#!/bin/sh
# patchd post-install. One script for both package formats:
#   dpkg postinst: configure <last-configured-version> | abort-upgrade | abort-remove | abort-deconfigure
#   rpm %post:     1 (first install) | 2+ (upgrade)
# A fresh install enables and starts the service; an upgrade restarts it only
# if it runs (try-restart), so an operator's `systemctl stop/disable` stands
# and nothing in an upgrade ever leaves a running patchd stopped.
#
# systemd may be absent or not running (image build, chroot, container):
# enabling only writes symlinks and works offline; anything that needs the
# running manager is skipped then. Nothing here fails the install: patchd not
# starting must not leave the package manager with a half-configured package.
set -e

root="${DPKG_ROOT:-}"
unit=patchd.service
marker="$root/var/lib/patchd/.fresh-install"

have_systemctl() { command -v systemctl >/dev/null 2>&1; }
# The running manager is only ours to talk to when we install into /.
running() { [ -z "$root" ] && [ -d /run/systemd/system ] && have_systemctl; }
offline() {
  have_systemctl || return 0
  if [ -n "$root" ]; then
    systemctl --root="$root" "$@" || echo "patchd: systemctl --root=$root $* failed; run it by hand" >&2
  else
    systemctl "$@" || echo "patchd: systemctl $* failed; run it by hand" >&2
  fi
}
online() {
  running || return 0
  systemctl "$@" || echo "patchd: systemctl $* failed; see journalctl -u $unit" >&2
}

fresh=no
case "$1" in
  configure)
    if [ -z "${2:-}" ] || [ -e "$marker" ]; then fresh=yes; fi
    ;;
  abort-upgrade | abort-remove | abort-deconfigure) ;;
  1) fresh=yes ;;
  [0-9]*) ;;
  *) exit 0 ;;
esac
rm -f "$marker"

online daemon-reload
if [ "$fresh" = yes ]; then
  offline enable "$unit"
  online start "$unit"
else
  online try-restart "$unit"
fi
exit 0
