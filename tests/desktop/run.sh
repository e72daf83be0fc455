#!/usr/bin/env bash
# The desktop app's tests, as on a real desktop but headless: an X server (Xvfb) with a
# window manager (openbox), on a private D-Bus session (dbus-run-session), where a small
# StatusNotifier host (sni_watcher.py) plays the panel that shows tray icons.
#
#   1. tray: the app started with --hidden shows no window, loads no OpenGL, and registers
#      its tray item with a live status line (its tooltip) and the whole menu; a second
#      launch opens the first one's window and ends; closing the window keeps the app and its
#      server running; "Start with my computer" writes an autostart entry that starts hidden;
#      Quit ends the app with status 0; with no tray host at all, the app runs, says how to
#      reopen it, shows its tray when a panel starts later (whose Quit, before any window,
#      ends it), and a second launch opens the window; with no display, asking for the
#      window says why not and the server runs on; on a federating server, "Copy invite
#      link" copies a working invite, "Check federation now" runs a check, and a click on the
#      icon opens the window;
#   2. window: tauri-driver and WebKitWebDriver drive the real window through the wizard
#      (wizard.mjs), saving a screenshot of each step.
#
# Usage: tests/desktop/run.sh   (KITH_DESKTOP_BIN and KITH_BIN name the binaries; the
# defaults are the debug builds in $CARGO_TARGET_DIR.)
set -euo pipefail
cd "$(dirname "$0")/../.."
ROOT=$PWD
TARGET=${CARGO_TARGET_DIR:-$HOME/.cache/kith-target}
export APP=${KITH_DESKTOP_BIN:-$TARGET/debug/kith-desktop}
export KITH=${KITH_BIN:-$TARGET/debug/kith}
export SHOTS=${SCREENSHOTS:-$ROOT/tests/desktop/screenshots}
mkdir -p "$SHOTS"
WORK=$(mktemp -d /tmp/kith-desktop-test.XXXXXX)
export WORK
PIDS=()
cleanup() {
    for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
    rm -rf "$WORK"
}
trap cleanup EXIT

. "$ROOT/tests/desktop/xvfb.sh"
dbus-run-session -- "$ROOT/tests/desktop/in-session.sh"
