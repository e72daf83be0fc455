#!/usr/bin/env bash
# The desktop app's memory and start-up, measured as a user's computer would see them, on a
# headless desktop (Xvfb, openbox, a private D-Bus session) with the release build:
#   - start-up: from launching `kith-desktop --hidden` to the first answer of its
#     `/_matrix/client/versions`;
#   - idle RSS in the tray (no window was ever made), with the window open (a second launch
#     opens the first one's window, as a user's double-click would), and after closing it
#     again; each the sum over the app's process and its WebKit helpers, after 10 s idle.
# Then the same on Wayland (a headless Weston compositor), as GNOME and KDE run by default:
# tray-only and window open (Weston's headless backend has no way to close a window from
# outside). Prints one line per figure. Usage: tests/bench/desktop.sh (KITH_BENCH_SKIP_BUILD=1
# to use the release binaries already built).
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/../.." && pwd)"
TARGET="${CARGO_TARGET_DIR:-$HOME/.cache/kith-target}"
if [ -z "${KITH_BENCH_SKIP_BUILD:-}" ]; then
    (cd "$ROOT" && make ui >/dev/null && src-tauri/install-deps.sh --bench &&
        CARGO_TARGET_DIR="$TARGET" cargo build --release -p kith-desktop -p kith-server-core --bins)
fi
PROFILE=${KITH_BENCH_PROFILE:-release}
export APP="$TARGET/$PROFILE/kith-desktop" KITH="$TARGET/$PROFILE/kith"
WORK=$(mktemp -d /tmp/kith-desktop-bench.XXXXXX)
export WORK
PIDS=()
cleanup() {
    for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
    rm -rf "$WORK"
}
trap cleanup EXIT
. "$ROOT/tests/desktop/xvfb.sh"

cat >"$WORK/tree.sh" <<'TREE'
# The app's process and its descendants (WebKit's helpers), and their summed RSS.
tree_pids() {
    ps -e -o pid=,ppid= | awk -v root="$1" '
        { parent[$1] = $2 } END { for (p in parent) { q = p; while (q != "" && q != root && q != 1 && q != 0) q = parent[q]; if (q == root) print p } }'
}
tree_rss_mib() {
    ps -o rss= -p "$(tree_pids "$1" | paste -sd, -)" | awk '{ s += $1 } END { printf "%.1f", s / 1024 }'
}
tree_list() {
    ps -o pid=,rss=,comm= -p "$(tree_pids "$1" | paste -sd, -)" | awk '{ printf "  %s: %.1f MiB\n", $3, $2 / 1024 }'
}
TREE
cat >"$WORK/session.sh" <<'INNER'
#!/usr/bin/env bash
set -euo pipefail
export NO_AT_BRIDGE=1
openbox >/dev/null 2>&1 &
OPENBOX=$!
PORT=$(/usr/bin/python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
mkdir -p "$WORK/data" "$WORK/home"
"$KITH" init --server-name family.test --data-dir "$WORK/data" --client-listen "127.0.0.1:$PORT" \
    --config "$WORK/data/kith.toml" >/dev/null
# A panel for the tray, so that the app runs as on a desktop.
/usr/bin/python3 "$(dirname "$0")/sni_watcher.py" >/dev/null 2>&1 &
WATCHER=$!
. "$WORK/tree.sh"
start=$(date +%s.%N)
HOME="$WORK/home" "$APP" --hidden --config "$WORK/data/kith.toml" >"$WORK/app.log" 2>&1 &
APP_PID=$!
until curl -fsS "http://127.0.0.1:$PORT/_matrix/client/versions" >/dev/null 2>&1; do sleep 0.02; done
echo "start-up to /versions: $(echo "$(date +%s.%N) - $start" | bc | awk '{ printf "%.2f", $1 }') s"
sleep 10
echo "idle RSS in the tray (no window): $(tree_rss_mib "$APP_PID") MiB"
HOME="$WORK/home" "$APP" --config "$WORK/data/kith.toml" >/dev/null 2>&1 || true
for _ in $(seq 100); do xdotool search --onlyvisible --name '^Kith$' >/dev/null 2>&1 && break; sleep 0.2; done
sleep 10
echo "idle RSS with the window open: $(tree_rss_mib "$APP_PID") MiB"
wmctrl -c Kith
sleep 10
echo "idle RSS after closing the window: $(tree_rss_mib "$APP_PID") MiB"
tree_list "$APP_PID"
kill "$APP_PID" "$WATCHER" "$OPENBOX" 2>/dev/null || true
INNER
cat >"$WORK/wayland.sh" <<'INNER'
#!/usr/bin/env bash
set -euo pipefail
. "$WORK/tree.sh"
export NO_AT_BRIDGE=1 XDG_RUNTIME_DIR="$WORK/run" GDK_BACKEND=wayland WAYLAND_DISPLAY=wayland-kith-bench
unset DISPLAY
mkdir -p -m 0700 "$XDG_RUNTIME_DIR"
weston --backend=headless-backend.so --socket="$WAYLAND_DISPLAY" --idle-time=0 >"$WORK/weston.log" 2>&1 &
WESTON=$!
until [ -S "$XDG_RUNTIME_DIR/$WAYLAND_DISPLAY" ]; do sleep 0.05; done
PORT=$(/usr/bin/python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
mkdir -p "$WORK/wl-data" "$WORK/wl-home"
"$KITH" init --server-name family.test --data-dir "$WORK/wl-data" --client-listen "127.0.0.1:$PORT" \
    --config "$WORK/wl-data/kith.toml" >/dev/null
/usr/bin/python3 "$(dirname "$0")/sni_watcher.py" >/dev/null 2>&1 &
WATCHER=$!
HOME="$WORK/wl-home" "$APP" --hidden --config "$WORK/wl-data/kith.toml" >"$WORK/wl-app.log" 2>&1 &
APP_PID=$!
until curl -fsS "http://127.0.0.1:$PORT/_matrix/client/versions" >/dev/null 2>&1; do sleep 0.02; done
sleep 10
echo "Wayland: idle RSS in the tray (no window): $(tree_rss_mib "$APP_PID") MiB"
HOME="$WORK/wl-home" "$APP" --config "$WORK/wl-data/kith.toml" >/dev/null 2>&1 || true
for _ in $(seq 100); do tree_list "$APP_PID" | grep -q WebKitWebProces && break; sleep 0.2; done
sleep 10
echo "Wayland: idle RSS with the window open: $(tree_rss_mib "$APP_PID") MiB"
kill "$APP_PID" "$WATCHER" "$WESTON" 2>/dev/null || true
INNER
chmod +x "$WORK/session.sh" "$WORK/wayland.sh"
cp "$ROOT/tests/desktop/sni_watcher.py" "$WORK/"
dbus-run-session -- "$WORK/session.sh" 2>/dev/null
dbus-run-session -- "$WORK/wayland.sh" 2>/dev/null
