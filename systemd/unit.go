// Package systemd holds the systemd unit the packages ship, so that
// `patchd service install` writes the very same unit on hosts installed
// without the packages.
package systemd

import _ "embed"

// Unit is systemd/patchd.service as shipped by the deb and rpm.
//
//go:embed patchd.service
var Unit string
