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
# The app ($APP_PID) ends within 15 s of a Quit ($1 says which), with status 0.
expect_quit() {
    for _ in $(seq 60); do kill -0 "$APP_PID" 2>/dev/null || break; sleep 0.25; done
    if kill -0 "$APP_PID" 2>/dev/null; then
        echo "FAIL: $1 did not end the app"
        FAILED=1
    else
        wait "$APP_PID"
        local code=$?
        echo "$1: exit status $code"
        [ "$code" -eq 0 ] || FAILED=1
    fi
}
free_port() { /usr/bin/python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }

echo "--- tray: --hidden, status line (tooltip), menu, no OpenGL, Quit"
TRAY=$WORK/tray
mkdir -p "$TRAY/home"
TRAY_PORT=$(free_port)
"$KITH" init --server-name family.test --data-dir "$TRAY" --client-listen "127.0.0.1:$TRAY_PORT" \
    --config "$TRAY/kith.toml" >/dev/null
/usr/bin/python3 "$ROOT/tests/desktop/sni_watcher.py" --check \
    --expect-menu "Open dashboard,Stop server,Check federation now,Copy invite link,Start with my computer,Quit" \
    --expect-label '^Kith: family\.test, LAN only, RAM [0-9]+ MB, cache [0-9]+ MB$' \
    --expect-disabled "Check federation now" \
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
# Nor does it start the window system: no OpenGL (Mesa's drivers pull in LLVM) is loaded.
if grep -E -q '_dri\.so|libgallium|libLLVM|libEGL_mesa|libGLX_mesa' "/proc/$APP_PID/maps"; then
    echo "FAIL: a tray-only start loaded OpenGL: $(grep -E -o '[^/]*(_dri\.so|libgallium|libLLVM)[^ ]*' "/proc/$APP_PID/maps" | sort -u | paste -sd' ')"
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
expect_quit "Quit"
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

echo "--- no tray host: the app still runs and says how to reopen it; a panel that starts later shows its tray"
HOME=$TRAY/home "$APP" --hidden --config "$TRAY/kith.toml" >"$WORK/app-no-tray.log" 2>&1 &
APP_PID=$!
PIDS+=($APP_PID)
for _ in $(seq 80); do curl -fsS "http://127.0.0.1:$TRAY_PORT/_matrix/client/versions" >/dev/null 2>&1 && break; sleep 0.25; done
if ! curl -fsS "http://127.0.0.1:$TRAY_PORT/_matrix/client/versions" >/dev/null 2>&1; then
    echo "FAIL: without a tray host the server did not start"
    FAILED=1
fi
grep -q "start Kith again" "$WORK/app-no-tray.log" || { echo "FAIL: no word on how to reopen Kith"; FAILED=1; }
# The panel comes up after the app (as it may at login), and Quit works before any window.
if /usr/bin/python3 "$ROOT/tests/desktop/sni_watcher.py" --check --expect-menu "Open dashboard,Quit" \
    --expect-label '^Kith: family\.test, LAN only' --click Quit --timeout 60 >"$WORK/tray-late.log" 2>&1; then
    echo "a panel started after the app shows its tray"
else
    echo "FAIL: a panel started after the app does not show its tray"
    tail -3 "$WORK/tray-late.log"
    FAILED=1
fi
expect_quit "Quit before any window"
echo "--- no tray host: a second launch opens the window"
HOME=$TRAY/home "$APP" --hidden --config "$TRAY/kith.toml" >"$WORK/app-no-tray-2.log" 2>&1 &
APP_PID=$!
PIDS+=($APP_PID)
for _ in $(seq 80); do curl -fsS "http://127.0.0.1:$TRAY_PORT/_matrix/client/versions" >/dev/null 2>&1 && break; sleep 0.25; done
HOME=$TRAY/home timeout 30 "$APP" --config "$TRAY/kith.toml" >/dev/null 2>&1
OPENED=""
for _ in $(seq 80); do xdotool search --onlyvisible --name '^Kith$' >/dev/null 2>&1 && OPENED=1 && break; sleep 0.25; done
[ -n "$OPENED" ] && echo "without a tray host, a second launch opened the window" || { echo "FAIL: no window after a second launch"; FAILED=1; }
kill "$APP_PID" 2>/dev/null
wait "$APP_PID" 2>/dev/null

echo "--- no display: asked for its window, a tray-only app says why not, and its server runs on"
HOME=$TRAY/home env -u DISPLAY -u WAYLAND_DISPLAY "$APP" --hidden --config "$TRAY/kith.toml" >"$WORK/app-no-display.log" 2>&1 &
APP_PID=$!
PIDS+=($APP_PID)
for _ in $(seq 80); do curl -fsS "http://127.0.0.1:$TRAY_PORT/_matrix/client/versions" >/dev/null 2>&1 && break; sleep 0.25; done
HOME=$TRAY/home timeout 30 "$APP" --config "$TRAY/kith.toml" >/dev/null 2>&1
sleep 1
if kill -0 "$APP_PID" 2>/dev/null && grep -q "no display" "$WORK/app-no-display.log" &&
    curl -fsS "http://127.0.0.1:$TRAY_PORT/_matrix/client/versions" >/dev/null 2>&1; then
    echo "without a display: $(grep -o 'Kith has no display[^;]*' "$WORK/app-no-display.log")"
else
    echo "FAIL: without a display, asking for the window ended the app or said nothing"
    tail -5 "$WORK/app-no-display.log"
    FAILED=1
fi
kill "$APP_PID" 2>/dev/null
wait "$APP_PID" 2>/dev/null

echo "--- tray: Copy invite link, Check federation now, and a click on the icon, on a federating server"
FED=$WORK/federating
mkdir -p "$FED/home"
FED_CLIENT=$(free_port)
FED_PORT=$(free_port)
"$KITH" init --server-name "127.0.0.1:$FED_PORT" --data-dir "$FED" --client-listen "127.0.0.1:$FED_CLIENT" \
    --federation-listen "127.0.0.1:$FED_PORT" --insecure-federation --registration token \
    --config "$FED/kith.toml" >/dev/null
echo "a long admin passphrase" >"$FED/admin-password"
"$KITH" user add admin --admin --password-file "$FED/admin-password" --config "$FED/kith.toml" >/dev/null
/usr/bin/python3 "$ROOT/tests/desktop/sni_watcher.py" --check \
    --expect-menu "Check federation now,Copy invite link" \
    --expect-label "^Kith: 127\.0\.0\.1:$FED_PORT, .+, RAM [0-9]+ MB, cache [0-9]+ MB\$" \
    --activate --click "Copy invite link,Check federation now" --click-when "$WORK/checked-once" --timeout 120 \
    >"$WORK/tray-fed.log" 2>&1 &
WATCHER=$!
sleep 0.5
HOME=$FED/home "$APP" --hidden --config "$FED/kith.toml" >"$WORK/app-fed.log" 2>&1 &
APP_PID=$!
PIDS+=($APP_PID)
api() { curl -fsS -H "authorization: Bearer $ADMIN_TOKEN" "http://127.0.0.1:$FED_CLIENT/_kith/admin/v1/$1"; }
json() { /usr/bin/python3 -c "import json, sys; d = json.load(sys.stdin); print($1)"; }
for _ in $(seq 80); do curl -fsS "http://127.0.0.1:$FED_CLIENT/_matrix/client/versions" >/dev/null 2>&1 && break; sleep 0.25; done
ADMIN_TOKEN=$(curl -fsS -X POST "http://127.0.0.1:$FED_CLIENT/_matrix/client/v3/login" \
    -d '{"type": "m.login.password", "identifier": {"type": "m.id.user", "user": "admin"}, "password": "a long admin passphrase"}' |
    json 'd["access_token"]')
# The self-check at start-up, then the one the menu asks for.
FIRST=""
for _ in $(seq 120); do
    FIRST=$(api status | json '(d.get("federation_health") or {}).get("checked_at", "")')
    [ -n "$FIRST" ] && break
    sleep 0.25
done
[ -n "$FIRST" ] || { echo "FAIL: no self-check at start-up"; FAILED=1; }
: >"$WORK/checked-once"
wait "$WATCHER" || { echo "FAIL: the tray check or its clicks failed"; tail -5 "$WORK/tray-fed.log"; FAILED=1; }
AGAIN="$FIRST"
for _ in $(seq 120); do
    AGAIN=$(api status | json '(d.get("federation_health") or {}).get("checked_at", "")')
    [ "$AGAIN" != "$FIRST" ] && break
    sleep 0.25
done
if [ -n "$FIRST" ] && [ "$AGAIN" != "$FIRST" ]; then
    echo "Check federation now ran a new check: $(api status | json 'd["federation_health"]["summary"]')"
else
    echo "FAIL: Check federation now ran no new check"
    FAILED=1
fi
INVITE=""
for _ in $(seq 40); do
    INVITE=$(xclip -o -selection clipboard 2>/dev/null || true)
    [ -n "$INVITE" ] && break
    sleep 0.25
done
echo "clipboard: $INVITE"
TOKEN=$(echo "$INVITE" | sed -n 's/.*registration token \([A-Za-z0-9]*\) .*/\1/p')
case "$INVITE" in
*"homeserver to http://127.0.0.1:$FED_CLIENT"*) ;;
*) echo "FAIL: the invite does not say where to connect"; FAILED=1 ;;
esac
# The invite works: a newcomer registers with its token.
SESSION=$(curl -sS -X POST "http://127.0.0.1:$FED_CLIENT/_matrix/client/v3/register" \
    -d '{"username": "newcomer", "password": "a newcomer passphrase"}' | json 'd["session"]')
REGISTERED=$(curl -sS -X POST "http://127.0.0.1:$FED_CLIENT/_matrix/client/v3/register" \
    -d "{\"username\": \"newcomer\", \"password\": \"a newcomer passphrase\", \"auth\": {\"type\": \"m.login.registration_token\", \"token\": \"$TOKEN\", \"session\": \"$SESSION\"}}" |
    json 'd.get("user_id", d)')
if [ "$REGISTERED" = "@newcomer:127.0.0.1:$FED_PORT" ]; then
    echo "the copied invite's token registered $REGISTERED"
else
    echo "FAIL: the copied invite's token did not register an account: $REGISTERED"
    FAILED=1
fi
# The click on the icon opened the dashboard.
OPENED=""
for _ in $(seq 80); do xdotool search --onlyvisible --name '^Kith$' >/dev/null 2>&1 && OPENED=1 && break; sleep 0.25; done
[ -n "$OPENED" ] && echo "a click on the tray icon opened the window" || { echo "FAIL: a click on the tray icon opened no window"; FAILED=1; }
kill "$APP_PID" 2>/dev/null
wait "$APP_PID" 2>/dev/null

if [ -f "$ROOT/tests/desktop/wizard.mjs" ]; then
    echo "--- window: the wizard in the real window (tauri-driver + WebKitWebDriver)"
    node --test "$ROOT/tests/desktop/wizard.mjs" || FAILED=1
fi
exit $FAILED
