#!/usr/bin/env bash
# Installs what the desktop app needs to build and to be tested on Debian/Ubuntu: Tauri 2's
# libraries (WebKitGTK 4.1, GTK 3, ...; the tray needs none, it speaks D-Bus), and with
# --test the headless desktop the tests run on (Xvfb, openbox, a D-Bus session, Python's
# D-Bus bindings for the tray check, WebKitWebDriver) and tauri-driver; with --bench, that
# and Weston for the benchmark's Wayland half; with --windows, MinGW for checking the app's
# Windows build (make lint-windows). Quiet when all is
# there. (About 80 s of packages on a fresh machine, and 90 s to build tauri-driver.)
set -euo pipefail

SUDO=""
if [ "$(id -u)" -ne 0 ]; then
    SUDO="sudo"
fi
packages=(pkg-config libwebkit2gtk-4.1-dev libsoup-3.0-dev libjavascriptcoregtk-4.1-dev
    libgtk-3-dev librsvg2-dev libssl-dev libxdo-dev libdbus-1-dev)
if [ "${1:-}" = "--test" ] || [ "${1:-}" = "--bench" ]; then
    packages+=(webkit2gtk-driver xvfb xauth openbox xdotool x11-apps imagemagick dbus
        dbus-x11 python3-dbus python3-gi fonts-dejavu-core xclip)
fi
if [ "${1:-}" = "--windows" ]; then
    # `make lint-windows`: MinGW, for the C code of the dependencies (aws-lc, ring).
    packages+=(gcc-mingw-w64-x86-64 g++-mingw-w64-x86-64)
fi
if [ "${1:-}" = "--bench" ]; then
    # The desktop benchmark's Wayland half runs on a headless Weston.
    packages+=(weston)
fi
missing=()
for package in "${packages[@]}"; do
    dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q "install ok installed" ||
        missing+=("$package")
done
if [ "${#missing[@]}" -gt 0 ]; then
    echo "== installing the desktop app's Debian packages (once): ${missing[*]}"
    install="$SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends ${missing[*]}"
    $install >/dev/null || { $SUDO apt-get update -q >/dev/null && $install >/dev/null; }
fi
if [ "${1:-}" = "--test" ] && ! command -v tauri-driver >/dev/null 2>&1; then
    echo "== building tauri-driver 2 (once)"
    # The registry's newest tauri-driver is a pre-release; cargo skips those for '^2'.
    cargo install tauri-driver --version '^2' --locked --quiet
fi
