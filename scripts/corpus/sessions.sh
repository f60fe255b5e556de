#!/usr/bin/env bash
# The corpus folders to replay against a server (`server`) or a client (`client`).
# Recorded sessions replay both ways; a hand-written one only against the side it
# tests (its other side is written by hand, see scripts/corpus/hand.py).
#   dm-conformance replay $(scripts/corpus/sessions.sh server) --server URL --admin-token T
#   dm-conformance replay $(scripts/corpus/sessions.sh client) --client '...'
set -euo pipefail
cd "$(dirname "$0")/../.."
want="${1:?usage: sessions.sh server|client}"
declare -A only=()
while read -r name dir; do only[$name]="$dir"; done < <(python3 scripts/corpus/hand.py --directions)
for d in fixtures/sessions/*/; do
    name="$(basename "$d")"
    [ -f "$d/session.toml" ] || continue
    if [ -z "${only[$name]:-}" ] || [ "${only[$name]}" = "$want" ]; then
        echo "fixtures/sessions/$name"
    fi
done
