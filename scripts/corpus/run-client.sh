#!/usr/bin/env bash
# Plays the client side of a recorded session with the reference client, for
#   dm-conformance replay fixtures/sessions/* --client \
#     'scripts/corpus/run-client.sh server={server} state={state} udp={udp} start={start}
#      sessions={sessions} id={id} user={user} password={password} auth={auth}
#      encoding={encoding} server_id={server_id} server_password={server_password}
#      model={model} manufacturer={manufacturer} firmware_version={firmware_version}
#      fw_key={fw_key} iccid={iccid} iccid_before={iccid_before}'
# Every argument is KEY=VALUE; a value still in braces (a [device] key the session
# does not have) counts as unset. DM_CLIENT (default target/debug/dm-client) is the
# binary. The device is created in {state}, then runs one client-initiated exchange
# (`run`: its sessions, downloads, update and report), or, when a package #0 starts
# the exchange, listens on {udp} for it (`daemon --max-sessions {sessions}`).
set -euo pipefail
here="$(cd "$(dirname "$0")/../.." && pwd)"
bin="${DM_CLIENT:-$here/target/debug/dm-client}"
declare -A v=()
for arg in "$@"; do
    key="${arg%%=*}"
    val="${arg#*=}"
    [[ "$val" =~ ^\{[a-z_]+\}$ ]] && val=""
    v[$key]="$val"
done
get() { echo "${v[$1]:-}"; }
state="$(get state)"
[ -n "$state" ] && [ -n "$(get server)" ] && [ -n "$(get id)" ] || {
    echo "run-client.sh: server=, state= and id= are required" >&2; exit 2; }
init=(--state "$state" init --server "$(get server)" --device-id "$(get id)"
      --auth "$(get auth | sed 's/^none$/basic/;s/^$/basic/')" --password "$(get password)")
[ -n "$(get user)" ] && init+=(--user "$(get user)")
[ -n "$(get encoding)" ] && init+=(--encoding "$(get encoding)")
[ -n "$(get server_id)" ] && init+=(--server-id "$(get server_id)")
[ -n "$(get server_password)" ] && init+=(--server-password "$(get server_password)")
[ -n "$(get model)" ] && init+=(--model "$(get model)")
[ -n "$(get manufacturer)" ] && init+=(--manufacturer "$(get manufacturer)")
[ -n "$(get firmware_version)" ] && init+=(--firmware-version "$(get firmware_version)")
[ -n "$(get fw_key)" ] && init+=(--fw-key "$(get fw_key)")
if [ "$(get start)" = notification ]; then
    init+=(--udp "$(get udp)" --poll-interval 0)
fi
if [ -n "$(get iccid_before)" ]; then
    init+=(--iccid "$(get iccid_before)")
elif [ -n "$(get iccid)" ]; then
    init+=(--iccid "$(get iccid)")
fi
"$bin" "${init[@]}" >/dev/null
if [ -n "$(get iccid_before)" ] && [ -n "$(get iccid)" ]; then
    # A first start with the old SIM, then the new one: reported with SIMCardChange.
    "$bin" --state "$state" status >/dev/null
    sed -i "s/$(get iccid_before)/$(get iccid)/" "$state/client.toml"
fi
if [ "$(get start)" = notification ]; then
    exec "$bin" --state "$state" daemon --max-sessions "$(get sessions | sed 's/^$/1/')"
else
    exec "$bin" --state "$state" run --yes
fi
