#!/usr/bin/env bash
# `make layout`: rewrites server-core/kith.order, the order in which the linker places the
# release `kith` binary's functions (server-core/build.rs passes it to rust-lld).
#
# Why: the kernel maps a program's code in 64 KiB windows around each page it runs. With
# the linker's default order, the few thousand functions a server runs at start-up and
# while idle are spread over all 12 MB of code, so most of it ends up resident. Placed
# together, they fill a little over 2 MB.
#
# How: the release binary runs under Valgrind's callgrind, which records every function
# that ran. First a start-up, two registrations and a few idle seconds (the functions of
# an idle server come first in the file), then the load run of `make bench` (requests of
# every kind; their functions come next). Functions keep their relative order within each
# group. Run it again after a dependency or toolchain update: entries that no longer name
# a function are skipped, so a stale file costs memory, never correctness.
set -euo pipefail

ROOT="$(cd "$(dirname "$0")/../.." && pwd)"
TARGET="${CARGO_TARGET_DIR:-$HOME/.cache/kith-target}"
ORDER="$ROOT/server-core/kith.order"
WORK="$(mktemp -d)"
VG_PID=""

cleanup() {
    if [ -n "$VG_PID" ]; then kill "$VG_PID" 2>/dev/null || true; wait "$VG_PID" 2>/dev/null || true; fi
    rm -rf "$WORK"
}
trap cleanup EXIT

command -v valgrind >/dev/null || { echo "layout: needs Valgrind (apt-get install valgrind)" >&2; exit 1; }

echo "== building Kith and the load generator (release)"
(cd "$ROOT" && CARGO_TARGET_DIR="$TARGET" cargo build --release -p kith-server-core -p kith-bench --bins)
KITH="$TARGET/release/kith"
BENCH="$TARGET/release/kith-bench"

PORT="$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()')"
BASE="http://127.0.0.1:$PORT"
"$KITH" init --server-name layout.local --data-dir "$WORK/kith" --client-listen "127.0.0.1:$PORT" \
    --registration open --config "$WORK/kith/kith.toml" >/dev/null
echo "== running Kith under callgrind"
valgrind --tool=callgrind --demangle=no --callgrind-out-file="$WORK/cg.out" \
    "$KITH" serve --config "$WORK/kith/kith.toml" >"$WORK/kith.log" 2>&1 &
VG_PID=$!
for _ in $(seq 1 240); do
    curl -fsS "$BASE/_matrix/client/versions" >/dev/null 2>&1 && break
    sleep 0.5
done
curl -fsS "$BASE/_matrix/client/versions" >/dev/null || { cat "$WORK/kith.log" >&2; exit 1; }

echo "== start-up, two registrations, idle"
for user in layout1 layout2; do
    curl -fsS -X POST "$BASE/_matrix/client/v3/register" \
        -d "{\"username\":\"$user\",\"password\":\"layout-password\",\"auth\":{\"type\":\"m.login.dummy\"}}" >/dev/null
done
sleep 10
callgrind_control --dump=idle "$VG_PID" >/dev/null

echo "== the load run of make bench (slow under Valgrind)"
KITH_BENCH_SENDS=200 "$BENCH" run kith "$BASE" "$VG_PID" "$WORK/bench.json" >/dev/null
kill -INT "$VG_PID"
wait "$VG_PID" || true
VG_PID=""

# Callgrind names a function in full once per file ("fn=(id) name"), then by its id.
python3 - "$KITH" "$ORDER" "$WORK"/cg.out.* "$WORK/cg.out" <<'EOF'
import re, subprocess, sys

binary, order_path, *dumps = sys.argv[1:]
address = {}
for line in subprocess.run(["nm", "--defined-only", binary], capture_output=True,
                           text=True, check=True).stdout.splitlines():
    parts = line.split()
    if len(parts) == 3 and parts[1] in "tTwW":
        address.setdefault(parts[2], int(parts[0], 16))
named = re.compile(r"^c?fn=\(\d+\) (\S+)")
seen, groups = set(), []
for dump in dumps:
    group = set()
    with open(dump) as f:
        for line in f:
            m = named.match(line)
            if m and m.group(1) in address and m.group(1) not in seen:
                group.add(m.group(1))
    seen |= group
    groups.append(sorted(group, key=address.get))
with open(order_path, "w") as out:
    for group in groups:
        out.writelines(name + "\n" for name in group)
print(f"layout: {sum(map(len, groups))} functions "
      f"({' then '.join(str(len(g)) for g in groups)}) in {order_path}")
EOF
