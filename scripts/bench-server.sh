#!/usr/bin/env bash
# Throughput, latency and memory of `dm-server` under `dm-client simulate`, on SQLite
# and on PostgreSQL, with a small registry and with 1,000,000 devices registered
# (BENCHMARKS.md, section dm-server).
#
#   scripts/bench-server.sh [DEVICES] [SESSIONS_PER_DEVICE] [CONCURRENCY]
#
# Defaults: 4000 devices, 3 sessions each, 16 sessions in flight. BIG (default
# 1000000) is the size of the large registry; PG_URL (default
# postgres://postgres@127.0.0.1:5432/test) the PostgreSQL database, in which the
# script creates and drops a schema of its own; NO_PG=1 skips PostgreSQL; BIG=0 skips
# the large registry; DM_SERVER=path runs another dm-server binary (an A/B of a
# change: build it, copy it aside, and run the script once with each).
#
# Every case starts a fresh store and server, provisions the devices (md5), and
# queues for every device, once per session it will run, a Get and a Replace
# (`--device-prefix`, one transaction per 10,000 devices). The server is configured
# to send at most 2 commands a session and no inventory Gets, so each session is
# package 1 to 4 carrying exactly that Get and that Replace. Then, in order:
#   1. the peer: examples/http_floor, the same number of "sessions" of 2 requests
#      each (GET /healthz), with the same threads and HTTP client;
#   2. `dm-client simulate` with the same devices, sessions and concurrency;
#   3. the peer again (its figure is the mean of the two runs).
# Afterwards the commands are counted by state in the store: every one must be done.
# The load generators and the server share the machine's cores.
set -euo pipefail

DEVICES=${1:-4000}
SESSIONS=${2:-3}
CONC=${3:-16}
BIG=${BIG:-1000000}
PG_URL=${PG_URL:-postgres://postgres@127.0.0.1:5432/test}
NO_PG=${NO_PG:-0}
PG_PORT=$(echo "$PG_URL" | sed -n 's#^[^@]*@[^:/]*:\([0-9]*\).*#\1#p')
PG_PORT=${PG_PORT:-5432}
PASSWORD=bench-pw

ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"
echo "== building release binaries" >&2
cargo build --release -q -p dm-server -p dm-client
cargo build --release -q -p dm-server --example http_floor
BIN=$ROOT/target/release
SERVER=${DM_SERVER:-$BIN/dm-server}
CLIENT=$BIN/dm-client
FLOOR=$BIN/examples/http_floor

WORK=$(mktemp -d /tmp/bench-server.XXXXXX)
SCHEMA=bench_server_$$
SERVER_PID=
PG_SCHEMA_MADE=0
TICK=$(getconf CLK_TCK)

cleanup() {
    if [ -n "$SERVER_PID" ]; then kill "$SERVER_PID" 2>/dev/null || true; fi
    if [ "$PG_SCHEMA_MADE" = 1 ]; then
        psql -q "$PG_URL" -c "DROP SCHEMA IF EXISTS $SCHEMA CASCADE" >/dev/null 2>&1 || true
    fi
    rm -rf "$WORK"
}
trap cleanup EXIT

free_port() {
    python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# CPU seconds (user + system) a process has used so far.
cpu_of() { awk -v t="$TICK" '{printf "%.2f", ($14 + $15) / t}' "/proc/$1/stat"; }
kib_of() { awk -v k="$2:" '$1 == k {print $2}' "/proc/$1/status"; }

# "pid cpu_seconds" of every PostgreSQL backend serving a connection of process $1
# (found by the client ports of its TCP connections to the database).
pg_backends_cpu() {
    local ports
    ports=$(ss -tnpH state established 2>/dev/null |
        awk -v p="pid=$1," -v db=":$PG_PORT" 'index($0, p) && substr($4, length($4) - length(db) + 1) == db {
            n = split($3, a, ":"); printf "%s%s", sep, a[n]; sep = ","
        }')
    [ -n "$ports" ] || return 0
    psql -At "$PG_URL" -c "SELECT pid FROM pg_stat_activity WHERE client_port IN ($ports)" |
        while read -r b; do [ -r "/proc/$b/stat" ] && echo "$b $(cpu_of "$b")"; done
}

# CPU seconds the backends used between two pg_backends_cpu snapshots.
pg_cpu_delta() {
    awk 'NR == FNR {before[$1] = $2; next} {d += $2 - before[$1]} END {printf "%.2f", d}' "$1" "$2"
}

# The store options for a case: SQLite in a directory, or a PostgreSQL schema.
store_args() {
    case $1 in
        sqlite) echo "--data $WORK/$2" ;;
        postgres) echo "--database $PG_URL?options=-csearch_path%3D${SCHEMA}_$2" ;;
    esac
}

fresh_store() { # kind name
    case $1 in
        sqlite) rm -rf "${WORK:?}/$2" ;;
        postgres)
            psql -q "$PG_URL" -c "DROP SCHEMA IF EXISTS ${SCHEMA}_$2 CASCADE; CREATE SCHEMA ${SCHEMA}_$2" >/dev/null 2>&1
            PG_SCHEMA_MADE=1
            ;;
    esac
}

drop_store() { # kind name
    case $1 in
        sqlite) rm -rf "${WORK:?}/$2" ;;
        postgres) psql -q "$PG_URL" -c "DROP SCHEMA IF EXISTS ${SCHEMA}_$2 CASCADE" >/dev/null 2>&1 ;;
    esac
}

store_size() { # kind name -> bytes of the whole store (SQLite files, or the schema's relations)
    case $1 in
        sqlite) du -sb "$WORK/$2" | cut -f1 ;;
        postgres) psql -At "$PG_URL" -c "SELECT sum(pg_total_relation_size(c.oid)) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = '${SCHEMA}_$2' AND c.relkind = 'r'" ;;
    esac
}

count_states() { # kind name -> "done=N failed=M ..."
    local q="SELECT state || '=' || count(*) FROM commands GROUP BY state ORDER BY state"
    case $1 in
        sqlite) sqlite3 "$WORK/$2/dm-server.sqlite" "$q" | tr '\n' ' ' ;;
        postgres) psql -At "$PG_URL" -c "SET search_path TO ${SCHEMA}_$2; $q" | grep = | tr '\n' ' ' ;;
    esac
}

# simulate's and http_floor's report -> "rate p50 p90 p99 completed failures"
parse_report() {
    awk '/^sessions completed:/ {c=$3}
         /^failures:/ {f=$2}
         /^latency:/ {p50=$3; p90=$6; p99=$9}
         /^elapsed:/ {gsub(/\(/, "", $4); r=$4}
         END {print r, p50, p90, p99, c, f}' "$1"
}

RESULTS=$WORK/results.txt
: >"$RESULTS"

# One case: store kind, registry size. Prints a result line.
run_case() {
    local kind=$1 registry=$2 name="${1}_$2"
    local store
    store=$(store_args "$kind" "$name")
    echo "== $kind, $registry devices registered, $DEVICES of them running $SESSIONS sessions each" >&2
    fresh_store "$kind" "$name"
    local port
    port=$(free_port)
    cat >"$WORK/$name.toml" <<EOF
listen = "127.0.0.1:$port"
inventory_nodes = []
max_commands_per_session = 2
# Every simulated device's first session is challenged (it does not know its md5
# nonce yet); from one address, that would trip the login rate limit.
max_auth_failures = 4000000000
EOF
    local cfg="--config $WORK/$name.toml"
    local t0=$SECONDS
    # shellcheck disable=SC2086
    "$SERVER" $cfg $store device import --generate "$registry" --prefix sim- --password "$PASSWORD" >/dev/null 2>&1
    local t_import=$((SECONDS - t0))
    for r in $(seq "$SESSIONS"); do
        # shellcheck disable=SC2086
        "$SERVER" $cfg $store command queue --device-prefix sim- --count "$DEVICES" \
            --get ./DevDetail/FwV --replace "./FUMO/1/PkgName=bench-$r" >/dev/null 2>&1
    done
    # shellcheck disable=SC2086
    "$SERVER" $cfg $store serve >"$WORK/$name.out" 2>"$WORK/$name.log" &
    SERVER_PID=$!
    for _ in $(seq 100); do
        grep -q 'listening on' "$WORK/$name.out" 2>/dev/null && break
        sleep 0.1
    done
    local url
    url=$(sed -n 's/^dm-server listening on //p' "$WORK/$name.out")
    [ -n "$url" ] || { cat "$WORK/$name.log" >&2; exit 1; }
    local rss_start
    rss_start=$(kib_of "$SERVER_PID" VmRSS)

    "$FLOOR" "$url" "$DEVICES" "$SESSIONS" "$CONC" 2 >"$WORK/$name.floor1"
    local cpu0 cpu1
    cpu0=$(cpu_of "$SERVER_PID")
    : >"$WORK/$name.pg0"
    : >"$WORK/$name.pg1"
    if [ "$kind" = postgres ]; then pg_backends_cpu "$SERVER_PID" >"$WORK/$name.pg0"; fi
    /usr/bin/time -f "%U %S" -o "$WORK/$name.simtime" \
        "$CLIENT" simulate --devices "$DEVICES" --sessions "$SESSIONS" --concurrency "$CONC" \
        --server "$url/dm" --auth md5 --password "$PASSWORD" --id-prefix sim- \
        --state "$WORK/$name.sim" >"$WORK/$name.sim.txt"
    cpu1=$(cpu_of "$SERVER_PID")
    if [ "$kind" = postgres ]; then pg_backends_cpu "$SERVER_PID" >"$WORK/$name.pg1"; fi
    local db_cpu
    db_cpu=$(pg_cpu_delta "$WORK/$name.pg0" "$WORK/$name.pg1")
    "$FLOOR" "$url" "$DEVICES" "$SESSIONS" "$CONC" 2 >"$WORK/$name.floor2"
    local metrics
    metrics=$(curl -s "$url/metrics")
    local rss hwm
    rss=$(kib_of "$SERVER_PID" VmRSS)
    hwm=$(kib_of "$SERVER_PID" VmHWM)
    kill "$SERVER_PID"
    wait "$SERVER_PID" 2>/dev/null || true
    SERVER_PID=

    local states
    states=$(count_states "$kind" "$name")
    local sim f1 f2
    sim=$(parse_report "$WORK/$name.sim.txt")
    f1=$(parse_report "$WORK/$name.floor1")
    f2=$(parse_report "$WORK/$name.floor2")
    local msgs engine_s
    msgs=$(echo "$metrics" | awk '$1 == "dm_messages_total" {print $2}')
    engine_s=$(echo "$metrics" | awk '$1 == "dm_message_seconds_sum" {print $2}')
    local client_cpu
    client_cpu=$(awk '{printf "%.2f", $1 + $2}' "$WORK/$name.simtime")
    # kind registry import_s | rate p50 p90 p99 completed failures | floor rates and
    # percentiles | server cpu s, client cpu s, messages, engine s | rss_start rss hwm | states
    read -r rate p50 p90 p99 done_ failed <<<"$sim"
    read -r fr1 fp50a _ fp99a _ ff1 <<<"$f1"
    read -r fr2 fp50b _ fp99b _ ff2 <<<"$f2"
    local want=$((DEVICES * SESSIONS))
    local line
    line=$(awk -v kind="$kind" -v reg="$registry" -v imp="$t_import" \
        -v rate="$rate" -v p50="$p50" -v p90="$p90" -v p99="$p99" -v done_="$done_" -v failed="$failed" \
        -v fr1="$fr1" -v fr2="$fr2" -v fp50a="$fp50a" -v fp50b="$fp50b" -v fp99a="$fp99a" -v fp99b="$fp99b" \
        -v scpu="$(awk -v a="$cpu0" -v b="$cpu1" 'BEGIN {print b - a}')" -v ccpu="$client_cpu" \
        -v msgs="$msgs" -v eng="$engine_s" -v rs="$rss_start" -v rss="$rss" -v hwm="$hwm" -v want="$want" \
        -v dbcpu="$db_cpu" \
        'BEGIN {
            fr = (fr1 + fr2) / 2
            printf "%s|%d|%d|%.0f|%s|%s|%s|%.0f|%.1f|%.3f|%.2f|%.2f|%.2f|%.3f|%d|%d|%d|%d|%d|%.2f\n",
                kind, reg, done_, rate, p50, p90, p99, fr, (fp50a + fp50b) / 2, rate / fr,
                1000 * scpu / want, 1000 * ccpu / want, msgs / want, 1000 * eng / want,
                rs, rss, hwm, failed + ff1 + ff2, imp, 1000 * dbcpu / want
        }')
    echo "$line|$states|$(store_size "$kind" "$name")" >>"$RESULTS" # fields 21, 22: states, store bytes
    echo "   sessions/s $rate (p50 $p50 p90 $p90 p99 $p99 ms), peer $fr1 / $fr2 sessions/s; commands: $states" >&2
    local expect_done=$((2 * want))
    if [ "$failed" != 0 ] || [ "$done_" != "$want" ] || ! echo "$states" | grep -qx "done=$expect_done "; then
        echo "!! $name: expected $want completed sessions and done=$expect_done, got completed=$done_ failed=$failed, $states" >&2
        sed -n '/^error/p' "$WORK/$name.sim.txt" >&2
        exit 1
    fi
    drop_store "$kind" "$name"
}

KINDS="sqlite"
if [ "$NO_PG" != 1 ]; then
    if psql -q "$PG_URL" -c 'SELECT 1' >/dev/null 2>&1; then
        KINDS="sqlite postgres"
    else
        echo "!! PostgreSQL at $PG_URL does not answer: SQLite only" >&2
    fi
fi
for kind in $KINDS; do
    run_case "$kind" "$DEVICES"
    if [ "$BIG" -gt 0 ]; then run_case "$kind" "$BIG"; fi
done

echo
echo "machine: $(nproc) cores, $(sed -n 's/^model name\s*: //p' /proc/cpuinfo | head -1), load before the run: $(cut -d' ' -f1-3 /proc/loadavg)"
echo "load: $DEVICES devices x $SESSIONS sessions (Get + Replace each), $CONC in flight; times in ms"
echo
echo "| store | devices registered | sessions | sessions/s | p50 | p90 | p99 | peer sessions/s | peer p50 | ratio | server CPU / session | PostgreSQL CPU / session | simulate CPU / session | messages / session | time in handle_dm / session | RSS at start (KiB) | RSS after (KiB) | peak RSS (KiB) |"
echo "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"
awk -F'|' '{printf "| %s | %d | %d | %d | %s | %s | %s | %d | %s | %s | %s | %s | %s | %s | %s | %d | %d | %d |\n",
    $1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, ($1 == "postgres" ? $20 : "-"), $12, $13, $14, $15, $16, $17}' "$RESULTS"
echo
awk -F'|' -v d="$DEVICES" '
    { rs[$1 "/" $2] = $15; rss[$1 "/" $2] = $16; rate[$1 "/" $2] = $4; p50[$1 "/" $2] = $5; p99[$1 "/" $2] = $7; reg[$1] = reg[$1] " " $2 }
    END {
        for (k in reg) {
            if (split(reg[k], r, " ") < 2) continue
            small = k "/" r[1]; big = k "/" r[2]
            idle = r[2] - r[1]
            printf "%s: %d idle devices more: RSS at start %+d KiB (%.1f bytes a device), after the sessions %+d KiB (%.1f bytes a device); sessions/s %.2fx, p50 %.2fx, p99 %.2fx of the small registry\n",
                k, idle, rs[big] - rs[small], 1024 * (rs[big] - rs[small]) / idle,
                rss[big] - rss[small], 1024 * (rss[big] - rss[small]) / idle,
                rate[big] / rate[small], p50[big] / p50[small], p99[big] / p99[small]
        }
    }' "$RESULTS"
echo "commands by state after each case (all must be done):"
awk -F'|' '{printf "  %s %s: %s(import of the registry: %s s; store after the run: %.1f MB)\n", $1, $2, $21, $19, $22 / 1e6}' "$RESULTS"
