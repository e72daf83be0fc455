#!/usr/bin/env bash
# Installs what the web UI's build and tests need: Node.js and npm (Debian's, when the
# machine has none), the UI's npm packages (ui/package-lock.json), and Debian's Chromium
# for the end-to-end tests in a real browser. Quiet when everything is there.
set -euo pipefail
cd "$(dirname "$0")/../.."

SUDO=""
if [ "$(id -u)" -ne 0 ]; then
    SUDO="sudo"
fi
apt_install() {
    local install="$SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends $*"
    $install >/dev/null || { $SUDO apt-get update -q >/dev/null && $install >/dev/null; }
}

if ! command -v npm >/dev/null 2>&1; then
    echo "== installing Node.js and npm from Debian (once)"
    apt_install nodejs npm
fi
if [ "${1:-}" = "--browser" ] && [ ! -x /usr/bin/chromium ]; then
    echo "== installing Chromium from Debian for the UI's browser tests (once)"
    apt_install chromium fonts-dejavu-core
fi
# npm ci starts from scratch each time; skip it while the lock file is what was installed.
stamp=ui/node_modules/.kith-lock
if [ ! -f "$stamp" ] || ! cmp -s ui/package-lock.json "$stamp"; then
    echo "== installing the UI's npm packages"
    (cd ui && npm ci --no-audit --no-fund --loglevel=error)
    cp ui/package-lock.json "$stamp"
fi
