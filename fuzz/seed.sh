#!/usr/bin/env bash
# Builds the seed corpora of every fuzz target into fuzz/corpus/<target>/ from the
# repository's fixtures, so that seeds are regenerated rather than committed:
#
#   fixtures/messages/*.xml          hand-written messages of every kind
#   fuzz/seeds/aosp-dm11/            recorded third-party server packets (XML, WBXML)
#   fixtures/sessions/*/NN-*.xml     recorded sessions, when present: each message
#                                    alone, and each side's messages joined in order
#                                    (the session targets take several messages)
#   dm-tree/ddf/*.xml                the shipped DDF documents
#
# WBXML seeds are made from every XML seed by our encoder (`syncml encode`) and, when
# installed, by libwbxml's xml2wbxml (another encoder's byte patterns). Package #0
# and update package seeds are built with `syncml notify build` / `package build`.
# Files already in a corpus (what earlier runs found) are kept.
#
# Usage: fuzz/seed.sh [SYNCML_BINARY]   (default: builds target/debug/syncml)
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
syncml=${1:-}
if [[ -z $syncml ]]; then
  cargo build -q -p syncml-core --bin syncml
  syncml=$root/target/debug/syncml
fi
corpus=$root/fuzz/corpus
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
sep=$(printf '\xff\xfenext\xfe\xff')

targets=(decode_xml decode_wbxml roundtrip_bytes roundtrip_model package0 package0_roundtrip
  uri ddf text_fields update_package server_session client_session)
for t in "${targets[@]}"; do mkdir -p "$corpus/$t"; done

# put TARGET FILE: copies FILE into TARGET's corpus under its content hash.
put() {
  local h
  h=$(sha1sum "$2" | cut -c1-40)
  cp "$2" "$corpus/$1/$h"
}

# Which side sent a message: its header's Source is a URL for the server.
from_server() { grep -q -m1 -E '<Source>[[:space:]]*<LocURI>[[:space:]]*https?:' "$1"; }

xml=()
for f in fixtures/messages/*.xml fuzz/seeds/aosp-dm11/*.xml fixtures/sessions/*/[0-9]*-*.xml; do
  [[ -f $f ]] && xml+=("$f")
done
n=0
for f in "${xml[@]}"; do
  n=$((n + 1))
  for t in decode_xml roundtrip_bytes; do put "$t" "$f"; done
  if "$syncml" encode --to wbxml -o "$work/$n.wbxml" "$f" 2>/dev/null; then
    for t in decode_wbxml roundtrip_bytes; do put "$t" "$work/$n.wbxml"; done
  fi
  if command -v xml2wbxml >/dev/null &&
    xml2wbxml -v 1.2 -o "$work/$n.lib.wbxml" "$f" >/dev/null 2>&1; then
    put decode_wbxml "$work/$n.lib.wbxml"
  fi
  # (the aosp-dm11 packets are all the server's)
  if [[ $f == fuzz/seeds/aosp-dm11/* ]] || from_server "$f"; then
    side=client_session
  else
    side=server_session
  fi
  put "$side" "$f"
  [[ -f $work/$n.wbxml ]] && put "$side" "$work/$n.wbxml"
  # URIs the messages name.
  grep -o '<LocURI>[^<]*' "$f" | sed 's/<LocURI>//' | while read -r u; do
    printf '%s' "$u" >"$work/uri"
    put uri "$work/uri"
  done || true
done
for f in fuzz/seeds/aosp-dm11/*.wbxml; do
  for t in decode_wbxml roundtrip_bytes client_session; do put "$t" "$f"; done
done

# Multi-message seeds: package 1 then 3 of the fixtures; each recorded session's
# client messages for the server, its server messages for the client.
join() { # join OUT FILE...
  local out=$1 first=1
  shift
  : >"$out"
  for f in "$@"; do
    [[ $first == 1 ]] || printf '%s' "$sep" >>"$out"
    cat "$f" >>"$out"
    first=0
  done
}
join "$work/pkg13" fixtures/messages/pkg1-client-init.xml fixtures/messages/pkg3-client-results.xml
put server_session "$work/pkg13"
join "$work/pkg24" fixtures/messages/pkg2-server-commands.xml fixtures/messages/ext-firmware-commands.xml
put client_session "$work/pkg24"
for d in fixtures/sessions/*/; do
  [[ -d $d ]] || continue
  client=() server=()
  for f in "$d"[0-9]*-client.xml; do [[ -f $f ]] && client+=("$f"); done
  for f in "$d"[0-9]*-server.xml; do [[ -f $f ]] && server+=("$f"); done
  name=$(basename "$d")
  if ((${#client[@]})); then join "$work/$name.c" "${client[@]}"; put server_session "$work/$name.c"; fi
  if ((${#server[@]})); then join "$work/$name.s" "${server[@]}"; put client_session "$work/$name.s"; fi
done

# URIs by hand: properties, lists, the edge cases of the grammar.
for u in . ./DevInfo/DevId 'DevInfo/Mod' './FUMO/x/PkgURL?prop=ACL' './Vendor?list=Struct' \
  './Vendor?list=StructData' './DMAcc?list=TNDS+Value+ACL' './A/../B' './A//B' './A/' \
  './A/./B' '?prop=Title' './A?prop=Nope' "./$(printf 'a%.0s' {1..200})"; do
  printf '%s' "$u" >"$work/uri"
  put uri "$work/uri"
done

# DDF and TNDS: the shipped descriptions, the TNDS fixture's content, in WBXML too.
for f in dm-tree/ddf/*.xml; do
  put ddf "$f"
  b=$work/$(basename "$f").wbxml
  command -v xml2wbxml >/dev/null && xml2wbxml -v 1.2 -o "$b" "$f" >/dev/null 2>&1 && put ddf "$b"
done
sed -n 's/.*\(<MgmtTree.*<\/MgmtTree>\).*/\1/p' fixtures/messages/tnds-in-data.xml >"$work/tnds.xml"
[[ -s $work/tnds.xml ]] && put ddf "$work/tnds.xml"

# Small text fields: the first byte picks the parser (see text_fields.rs).
tf() { printf "\\x$1%s" "$2" >"$work/tf"; put text_fields "$work/tf"; }
tf 00 'algorithm=MD5, username="dev-user", mac=NTI2OTJhMDAwNjYxODkwMQ=='
tf 00 'username="a\"b",mac=AAAAAAAAAAAAAAAAAAAAAA=='
tf 01 'Add=*&Get=srv1+srv2&Replace=srv1'
tf 01 'Get=*'
tf 02 'Tm9uY2U='
tf 03 'application/vnd.syncml.dm+wbxml; charset=utf-8'
for v in 'aGVsbG8=' 'true' '-2147483648' '1.5e3' '20261121' 'T101500Z' '<a>b</a>' 'x' ''; do
  for f in 00 01 02 03 04 05 06 07 08 09 0a; do
    printf "\\x04\\x$f%s" "$v" >"$work/tf"
    put text_fields "$work/tf"
  done
done

# Package #0: each UI mode and version, with and without vendor bytes.
i=0
for ui in background informative user-interaction not-specified; do
  for ver in 11 12; do
    i=$((i + 1))
    "$syncml" notify build --server-id srv --password srvpw --nonce-b64 Tm9uY2U= \
      --session-id "$(printf '%X' $((i * 4099)))" --ui-mode "$ui" --version "$ver" \
      ${vendor:+--vendor-hex "$vendor"} -o "$work/p0" && put package0 "$work/p0"
    vendor=0102
  done
done

# Update packages: a full and a delta package (mode byte 0), and the delta's bsdiff
# patch alone (mode byte 1: the target wraps it in a valid header).
seq 1 1000 >"$work/old.img"
{ head -c 2000 "$work/old.img"; printf 'NEW VERSION'; tail -c 1500 "$work/old.img"; } >"$work/new.img"
"$syncml" package build --model X1 --to-version 2.0 --full "$work/new.img" -o "$work/full.pkg"
"$syncml" package build --model X1 --from-version 1.0 --to-version 2.0 \
  --delta "$work/old.img" "$work/new.img" -o "$work/delta.pkg"
for p in full delta; do
  { printf '\x00'; cat "$work/$p.pkg"; } >"$work/up"
  put update_package "$work/up"
done
# The patch starts at its magic (BSDIFF40) inside the delta package.
off=$(grep -abo BSDIFF40 "$work/delta.pkg" | head -1 | cut -d: -f1)
{ printf '\x01'; tail -c +$((off + 1)) "$work/delta.pkg"; } >"$work/up"
put update_package "$work/up"

for t in "${targets[@]}"; do
  printf '%-20s %4d seeds\n' "$t" "$(find "$corpus/$t" -type f | wc -l)"
done
