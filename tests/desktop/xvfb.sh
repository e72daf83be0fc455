# Sourced by the desktop tests and benchmark: starts an X server (Xvfb) on a free display,
# adds its PID to PIDS and exports DISPLAY. Needs WORK (a scratch folder) and PIDS.
exec 8>"$WORK/display"
Xvfb -displayfd 8 -screen 0 1280x860x24 -nolisten tcp >"$WORK/xvfb.log" 2>&1 &
PIDS+=($!)
for _ in $(seq 100); do [ -s "$WORK/display" ] && break; sleep 0.1; done
exec 8>&-
DISPLAY=":$(head -1 "$WORK/display")"
export DISPLAY
