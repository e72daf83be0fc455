#!/usr/bin/env bash
# Installs Pebble, Let's Encrypt's test ACME authority, from Debian, for the ACME tests.
# Prints nothing when it is already there.
set -euo pipefail

if command -v pebble >/dev/null 2>&1; then
    exit 0
fi
echo "== installing pebble from Debian (once)"
SUDO=""
if [ "$(id -u)" -ne 0 ]; then
    SUDO="sudo"
fi
install() {
    $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends pebble
}
install >/dev/null || { $SUDO apt-get update -q >/dev/null && install >/dev/null; }
command -v pebble >/dev/null
