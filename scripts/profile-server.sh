#!/usr/bin/env bash
# Where dm-server's instructions go in a session (BENCHMARKS.md, section dm-server):
# the server runs under callgrind on SQLite while `dm-client simulate` runs
# DEVICES x SESSIONS sessions of a Get and a Replace (as in scripts/bench-server.sh),
# and only the sessions are counted (instrumentation is switched on once the server
# listens). Instruction counts barely vary between runs, unlike times on a shared
# machine, so this is also how to compare two builds: DM_SERVER=path runs another
# binary.
#
#   scripts/profile-server.sh [DEVICES] [SESSIONS]     # defaults 100 2, under a minute
set -euo pipefail
DEVICES=${1:-100}
SESSIONS=${2:-2}
ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"
cargo build --release -q -p dm-server -p dm-client
SERVER=${DM_SERVER:-$ROOT/target/release/dm-server}
CLIENT=$ROOT/target/release/dm-client
WORK=$(mktemp -d /tmp/profile-server.XXXXXX)
VG_PID=
cleanup() {
    if [ -n "$VG_PID" ]; then kill "$VG_PID" 2>/dev/null || true; fi
    rm -rf "$WORK"
}
trap cleanup EXIT

PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
cat >"$WORK/cfg.toml" <<EOF
listen = "127.0.0.1:$PORT"
inventory_nodes = []
max_commands_per_session = 2
max_auth_failures = 4000000000
EOF
S="--config $WORK/cfg.toml --data $WORK/data"
# shellcheck disable=SC2086
"$SERVER" $S device import --generate "$DEVICES" --prefix sim- --password pw >/dev/null 2>&1
for r in $(seq "$SESSIONS"); do
    # shellcheck disable=SC2086
    "$SERVER" $S command queue --device-prefix sim- --count "$DEVICES" \
        --get ./DevDetail/FwV --replace "./FUMO/1/PkgName=r$r" >/dev/null 2>&1
done
# shellcheck disable=SC2086
valgrind --tool=callgrind --instr-atstart=no --callgrind-out-file="$WORK/cg.out" \
    "$SERVER" $S serve >"$WORK/out.txt" 2>"$WORK/log.txt" &
VG_PID=$!
for _ in $(seq 300); do
    grep -q 'listening on' "$WORK/out.txt" 2>/dev/null && break
    sleep 0.2
done
callgrind_control -i on "$VG_PID" >/dev/null
callgrind_control -z "$VG_PID" >/dev/null
"$CLIENT" simulate --devices "$DEVICES" --sessions "$SESSIONS" --concurrency 4 \
    --server "http://127.0.0.1:$PORT/dm" --auth md5 --password pw --id-prefix sim- \
    --state "$WORK/sim" >&2
callgrind_control -d "$VG_PID" >/dev/null
sleep 1
kill "$VG_PID"
wait "$VG_PID" 2>/dev/null || true
VG_PID=
echo "done commands: $(sqlite3 "$WORK/data/dm-server.sqlite" "SELECT count(*) FROM commands WHERE state = 'done'") of $((2 * DEVICES * SESSIONS))"
SESSIONS_RUN=$((DEVICES * SESSIONS))
callgrind_annotate --inclusive=yes "$WORK"/cg.out.1 2>/dev/null |
    awk -v n="$SESSIONS_RUN" '
        /PROGRAM TOTALS/ { gsub(",", "", $1); printf "instructions per session: %d (%d sessions)\n", $1 / n, n }
        /^ *[0-9,]+ \( *[0-9.]+%\)/ && (/dm_server::/ || /syncml_core::codec::(de|en)code/ || /Outbox::fill/ ||
            /Digest>::digest$/ || /Subscriber>::event \[/ || /poll_catch \[/ || /sqlite3Reprepare/ || /serde_json::de::from_trait \[/) {
            if (++shown <= 40) print
        }' | cut -c1-200
