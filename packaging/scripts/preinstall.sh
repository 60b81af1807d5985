#!/bin/sh
# patchd pre-install. One script for both package formats:
#   dpkg preinst: install [<old-version>] | upgrade <old-version> | abort-upgrade <new-version>
#   rpm %pre:     1 (first install) | 2+ (upgrade)
# It only notes that this is a fresh install, for postinstall to enable and
# start the service. dpkg cannot tell postinst that by itself: a reinstall
# after `dpkg --remove` (config files left behind) reaches postinst with the
# old version, exactly like an upgrade, although the service was disabled.
set -e

root="${DPKG_ROOT:-}"
state="$root/var/lib/patchd"

case "$1" in
  install | 1)
    mkdir -p "$state"
    chmod 0700 "$state"
    : >"$state/.fresh-install"
    ;;
esac
exit 0
