#!/usr/bin/env bash
# Runs inside run.sh's X server and private D-Bus session; see run.sh.
set -uo pipefail
cd "$(dirname "$0")/../.."
ROOT=$PWD
export NO_AT_BRIDGE=1
PIDS=()
trap 'for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null; done' EXIT
openbox >"$WORK/openbox.log" 2>&1 &
PIDS+=($!)
FAILED=0
free_port() { /usr/bin/python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }

echo "--- tray: --hidden, status line and label, menu, Quit"
TRAY=$WORK/tray
mkdir -p "$TRAY/home"
TRAY_PORT=$(free_port)
"$KITH" init --server-name family.test --data-dir "$TRAY" --client-listen "127.0.0.1:$TRAY_PORT" \
    --config "$TRAY/kith.toml" >/dev/null
/usr/bin/python3 "$ROOT/tests/desktop/sni_watcher.py" --check \
    --expect-menu "Open dashboard,Stop server,Check federation now,Copy invite link,Start with my computer,Quit" \
    --expect-label '^Kith: family\.test, LAN only, RAM [0-9]+ MB, cache [0-9]+ MB$' \
    --click "Start with my computer,Quit" --click-when "$WORK/measured" --timeout 120 >"$WORK/tray-check.log" 2>&1 &
WATCHER=$!
sleep 0.5
HOME=$TRAY/home "$APP" --hidden --config "$TRAY/kith.toml" >"$WORK/app-tray.log" 2>&1 &
APP_PID=$!
PIDS+=($APP_PID)
# A tray-only start creates no window (and no webview).
for _ in $(seq 120); do grep -q '"event": "ready"' "$WORK/tray-check.log" 2>/dev/null && break; sleep 0.25; done
sleep 3
if xdotool search --onlyvisible --name '^Kith$' >/dev/null 2>&1; then
    echo "FAIL: a window was created by a --hidden start"
    FAILED=1
fi
TRAY_RSS_KIB=$(ps -o rss= -p "$APP_PID" | tr -d ' ')
echo "tray-only RSS (server included): $((TRAY_RSS_KIB / 1024)) MiB"
echo "$TRAY_RSS_KIB" >"$WORK/tray-rss-kib"

echo "--- one instance: a second launch opens the first one's window, and ends"
HOME=$TRAY/home timeout 30 "$APP" --config "$TRAY/kith.toml" >"$WORK/app-second.log" 2>&1
echo "second launch ended with status $?"
WINDOW=""
for _ in $(seq 80); do
    WINDOW=$(xdotool search --onlyvisible --name '^Kith$' 2>/dev/null | head -1)
    [ -n "$WINDOW" ] && break
    sleep 0.25
done
if [ -z "$WINDOW" ]; then
    echo "FAIL: the second launch did not open the first one's window"
    FAILED=1
fi
echo "--- closing the window keeps the server running in the tray"
wmctrl -c Kith
for _ in $(seq 40); do xdotool search --onlyvisible --name '^Kith$' >/dev/null 2>&1 || break; sleep 0.25; done
if xdotool search --onlyvisible --name '^Kith$' >/dev/null 2>&1; then
    echo "FAIL: the window did not close"
    FAILED=1
fi
if ! kill -0 "$APP_PID" 2>/dev/null || ! curl -fsS "http://127.0.0.1:$TRAY_PORT/_matrix/client/versions" >/dev/null; then
    echo "FAIL: the app or its server stopped when the window closed"
    FAILED=1
else
    echo "the app and its server run on after the window closed"
fi
touch "$WORK/measured"
wait "$WATCHER" || FAILED=1
grep -E 'tray-check:|"event": "item"' "$WORK/tray-check.log" | tail -2
for _ in $(seq 60); do kill -0 "$APP_PID" 2>/dev/null || break; sleep 0.25; done
if kill -0 "$APP_PID" 2>/dev/null; then
    echo "FAIL: the app still runs after Quit"
    FAILED=1
else
    wait "$APP_PID"
    code=$?
    echo "exit status after Quit: $code"
    [ "$code" -eq 0 ] || FAILED=1
fi
if ls "$TRAY/home/.config/autostart/"*.desktop >/dev/null 2>&1; then
    echo "Start with my computer: $(ls "$TRAY/home/.config/autostart/") written"
    grep -q -- '--hidden' "$TRAY/home/.config/autostart/"*.desktop || { echo "FAIL: autostart does not start hidden"; FAILED=1; }
else
    echo "FAIL: Start with my computer wrote no autostart entry"
    FAILED=1
fi
if [ "$FAILED" -ne 0 ]; then
    echo "--- app log"; tail -30 "$WORK/app-tray.log"
    echo "--- tray log"; tail -5 "$WORK/tray-check.log"
fi

echo "--- no tray host: the app still runs, says how to reopen it, and a second launch does"
HOME=$TRAY/home "$APP" --hidden --config "$TRAY/kith.toml" >"$WORK/app-no-tray.log" 2>&1 &
APP_PID=$!
PIDS+=($APP_PID)
for _ in $(seq 80); do curl -fsS "http://127.0.0.1:$TRAY_PORT/_matrix/client/versions" >/dev/null 2>&1 && break; sleep 0.25; done
if ! curl -fsS "http://127.0.0.1:$TRAY_PORT/_matrix/client/versions" >/dev/null 2>&1; then
    echo "FAIL: without a tray host the server did not start"
    FAILED=1
fi
grep -q "start Kith again" "$WORK/app-no-tray.log" || { echo "FAIL: no word on how to reopen Kith"; FAILED=1; }
HOME=$TRAY/home timeout 30 "$APP" --config "$TRAY/kith.toml" >/dev/null 2>&1
OPENED=""
for _ in $(seq 80); do xdotool search --onlyvisible --name '^Kith$' >/dev/null 2>&1 && OPENED=1 && break; sleep 0.25; done
[ -n "$OPENED" ] && echo "without a tray host, a second launch opened the window" || { echo "FAIL: no window after a second launch"; FAILED=1; }
kill "$APP_PID" 2>/dev/null
wait "$APP_PID" 2>/dev/null

if [ -f "$ROOT/tests/desktop/wizard.mjs" ]; then
    echo "--- window: the wizard in the real window (tauri-driver + WebKitWebDriver)"
    node --test "$ROOT/tests/desktop/wizard.mjs" || FAILED=1
fi
exit $FAILED
