#!/usr/bin/env bash
# `make bench`: the same workload (tests/bench/src/main.rs) against Kith and against Synapse,
# one after the other on this machine, then a table with the ratios. Both servers use SQLite
# and listen on loopback only. Synapse comes from PyPI into a cached venv; its rate limits are
# raised so that they do not cap the figures. KITH_BENCH_SKIP_FEDERATION=1 stops after the
# single-server table.
set -euo pipefail

ROOT="$(cd "$(dirname "$0")/../.." && pwd)"
TARGET="${CARGO_TARGET_DIR:-$HOME/.cache/kith-target}"
WORK="$(mktemp -d)"
PIDS=()

cleanup() {
    for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
    for pid in "${PIDS[@]}"; do wait "$pid" 2>/dev/null || true; done
    rm -rf "$WORK"
}
trap cleanup EXIT

free_port() {
    python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()'
}

wait_for() {
    local url="$1" name="$2"
    for _ in $(seq 1 600); do
        if curl -fsS "$url" >/dev/null 2>&1; then return 0; fi
        sleep 0.5
    done
    echo "bench: $name did not start (see $WORK)" >&2
    exit 1
}

if [ -n "${KITH_BENCH_SKIP_BUILD:-}" ]; then
    echo "== using the release binaries already in $TARGET (KITH_BENCH_SKIP_BUILD)"
else
    echo "== building Kith and the load generator (release)"
    (cd "$ROOT" && CARGO_TARGET_DIR="$TARGET" cargo build --release -p kith-server-core -p kith-bench --bins)
fi
KITH="$TARGET/release/kith"
BENCH="$TARGET/release/kith-bench"
for bin in "$KITH" "$BENCH"; do
    [ -x "$bin" ] || { echo "bench: $bin is missing; run without KITH_BENCH_SKIP_BUILD" >&2; exit 1; }
done
# The idle figure depends on server-core/kith.order naming the binary's functions; code
# changes rename some of them (`make layout` writes the file again).
ORDER="$ROOT/server-core/kith.order"
if [ -f "$ORDER" ]; then
    FOUND="$(nm --defined-only "$KITH" | awk '{print $3}' | sort -u | comm -12 - <(sort -u "$ORDER") | wc -l)"
    echo "== kith.order: $FOUND of $(sort -u "$ORDER" | wc -l) functions are in this binary"
fi

echo "== Synapse from PyPI (cached venv, tests/synapse/install.sh)"
VENV="${KITH_SYNAPSE_VENV:-$HOME/.cache/kith/synapse-venv}"
KITH_SYNAPSE_VENV="$VENV" "$ROOT/tests/synapse/install.sh"
SYNAPSE_VERSION="$("$VENV/bin/python" -c 'import synapse; print(synapse.__version__)')"

echo "== Kith"
KPORT="$(free_port)"
"$KITH" init --server-name bench.local --data-dir "$WORK/kith" --client-listen "127.0.0.1:$KPORT" \
    --registration open --config "$WORK/kith/kith.toml" >/dev/null
"$KITH" serve --config "$WORK/kith/kith.toml" >"$WORK/kith.log" 2>&1 &
KPID=$!
PIDS+=("$KPID")
wait_for "http://127.0.0.1:$KPORT/_matrix/client/versions" Kith
"$BENCH" run kith "http://127.0.0.1:$KPORT" "$KPID" "$WORK/kith.json" >/dev/null
kill "$KPID"; wait "$KPID" 2>/dev/null || true

echo "== Synapse $SYNAPSE_VERSION"
SPORT="$(free_port)"
mkdir -p "$WORK/synapse"
(cd "$WORK/synapse" && "$VENV/bin/python" -m synapse.app.homeserver --server-name bench.local \
    --config-path homeserver.yaml --data-directory "$WORK/synapse" --generate-config --report-stats=no >/dev/null)
cat >"$WORK/synapse/bench.yaml" <<YAML
listeners:
  - port: $SPORT
    type: http
    tls: false
    bind_addresses: ['127.0.0.1']
    x_forwarded: false
    resources:
      - names: [client, media]
        compress: false
enable_registration: true
enable_registration_without_verification: true
trusted_key_servers: []
suppress_key_server_warning: true
rc_message: {per_second: 100000, burst_count: 100000}
rc_registration: {per_second: 100000, burst_count: 100000}
rc_media_create: {per_second: 100000, burst_count: 100000}
rc_joins: {local: {per_second: 100000, burst_count: 100000}, remote: {per_second: 100000, burst_count: 100000}}
rc_login:
  address: {per_second: 100000, burst_count: 100000}
  account: {per_second: 100000, burst_count: 100000}
  failed_attempts: {per_second: 100000, burst_count: 100000}
YAML
"$VENV/bin/python" -m synapse.app.homeserver -c "$WORK/synapse/homeserver.yaml" \
    -c "$WORK/synapse/bench.yaml" >"$WORK/synapse.log" 2>&1 &
SPID=$!
PIDS+=("$SPID")
wait_for "http://127.0.0.1:$SPORT/_matrix/client/versions" Synapse
"$BENCH" run synapse "http://127.0.0.1:$SPORT" "$SPID" "$WORK/synapse.json" >/dev/null
kill "$SPID"; wait "$SPID" 2>/dev/null || true

echo
echo "Machine: $(nproc) cores, $(awk '/MemTotal/ {printf "%.0f GiB", $2/1048576}' /proc/meminfo) RAM, $(uname -sr); $(date -u +%Y-%m-%d)"
echo "Kith $(git -C "$ROOT" rev-parse --short HEAD) (release build) vs Synapse $SYNAPSE_VERSION (SQLite); both on loopback"
echo
"$BENCH" table "$WORK/kith.json" "$WORK/synapse.json"

if [ -n "${KITH_BENCH_SKIP_FEDERATION:-}" ]; then exit 0; fi

# Federation (issue 4): joining a big room hosted on Synapse, from Kith and from a second
# Synapse, and one busy room's throughput both ways. An optimised build of the test harness
# (profile bench-harness: release without LTO);
# KITH_BENCH_MEMBERS, KITH_BENCH_STATE and KITH_BENCH_MESSAGES size the run (1,000 members,
# 10,000 state events and 500 messages unless set; on two cores Synapse takes about an hour
# to build the full-size room, most of it for the state events past 3,400).
# KITH_BENCH_KEEP_ROOM=DIR keeps the host Synapse and its room in DIR for the next run.
echo
echo "== federation (tests/tests/integration/bench_federation.rs)"
(cd "$ROOT" && KITH_BENCH_MEMBERS="${KITH_BENCH_MEMBERS:-1000}" KITH_BENCH_STATE="${KITH_BENCH_STATE:-10000}" \
    KITH_BENCH_MESSAGES="${KITH_BENCH_MESSAGES:-500}" CARGO_TARGET_DIR="$TARGET" \
    cargo test --profile bench-harness -p kith-tests --test integration -- --exact \
    bench_federation::a_room_with_members_and_state_is_joined_from_kith_and_synapse_and_carries_messages \
    --nocapture 2>&1 | grep -A8 'room built\|federation benchmark')
