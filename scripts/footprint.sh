#!/usr/bin/env bash
# dm-client footprint (BENCHMARKS.md, section dm-client): stripped binary sizes,
# peak heap of one whole FOTA run, peak RSS. Needs strip, nm (binutils) and
# /usr/bin/time (Debian package time); run from anywhere, after scripts/setup.sh.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
target=${CARGO_TARGET_DIR:-$root/target}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

echo "building (release profile of the workspace) ..." >&2
cargo build -q --release -p dm-client --no-default-features --example engine_size
cargo build -q --release -p dm-client --example footprint
# The binary alone, last: built with an example, cargo would unify the features of
# the dev-dependencies (rustls) into it and uplift that variant.
cargo build -q --release -p dm-client --bin dm-client

# The baseline to subtract: an empty program built with the same toolchain and the
# same release profile (opt-level 3, debug = 1), stripped the same way.
mkdir -p "$work/empty/src"
cat >"$work/empty/Cargo.toml" <<'EOF'
[package]
name = "empty"
version = "0.0.0"
edition = "2021"

[workspace]

[profile.release]
debug = 1
EOF
echo 'fn main() {}' >"$work/empty/src/main.rs"
cargo build -q --release --offline --manifest-path "$work/empty/Cargo.toml" \
    --target-dir "$target/footprint-empty"

# The same two programs with a profile tuned for size, as an embedded vendor would
# build them (separate target directories, so the workspace's builds stay cached).
small_profile() {
    CARGO_PROFILE_RELEASE_OPT_LEVEL=z CARGO_PROFILE_RELEASE_LTO=true \
        CARGO_PROFILE_RELEASE_CODEGEN_UNITS=1 CARGO_PROFILE_RELEASE_PANIC=abort "$@"
}
small_profile cargo build -q --release -p dm-client --no-default-features \
    --example engine_size --target-dir "$target/footprint-small"
small_profile cargo build -q --release --offline --manifest-path "$work/empty/Cargo.toml" \
    --target-dir "$target/footprint-small-empty"

stripped() { # stripped size in bytes of $1
    strip -o "$work/stripped" "$1"
    stat -c %s "$work/stripped"
}
max_rss() { # median over 5 runs of the peak RSS in KiB of the command "$@"
    for _ in 1 2 3 4 5; do
        /usr/bin/time -v "$@" 2>"$work/time" >/dev/null
        awk -F': *' '/Maximum resident set size/ {print $2}' "$work/time"
    done | sort -n | sed -n 3p
}
project_symbols() { # bytes of code and data symbols named in the project's crates
    nm -S -C "$1" | awk '$3 ~ /^[tTrRdDbB]$/ {
        name = $0; sub(/^[^ ]+ [^ ]+ [^ ]+ /, "", name)
        if (name ~ /^[<&*]*(syncml_core|dm_tree|dm_client)::/) sum += strtonum("0x" $2)
    } END { print sum + 0 }'
}

empty_bin=$target/footprint-empty/release/empty
engine_bin=$target/release/examples/engine_size
cli_bin=$target/release/dm-client
fp_bin=$target/release/examples/footprint

"$engine_bin" # fails the script unless the session ran
"$target/footprint-small/release/examples/engine_size"
empty=$(stripped "$empty_bin")
engine=$(stripped "$engine_bin")
small_empty=$(stripped "$target/footprint-small-empty/release/empty")
small_engine=$(stripped "$target/footprint-small/release/examples/engine_size")
cli=$(stripped "$cli_bin")
engine_syms=$(project_symbols "$engine_bin")

fp=$("$fp_bin")
echo "$fp" >&2
field() { # value of key $2 on the footprint line matching $1
    grep -E "$1" <<<"$fp" | head -n1 | tr ' ' '\n' | awk -F= -v k="$2" '$1 == k {print $2}'
}
small_peak=$(field '^footprint image=4096 package=' peak_heap)
small_base=$(field '^footprint image=4096 package=' baseline_heap)
large_peak=$(field '^footprint image=1048576 package=' peak_heap)
excl=$(field '^footprint excluding_package' peak_heap)
sess=$(field '^footprint fit phase=session1 ' intercept_heap)
stage_slope=$(field '^footprint fit phase=stage_reboot ' heap_per_image_byte)

"$cli_bin" --state "$work/state" init --server http://127.0.0.1:9/dm \
    --device-id IMEI:490154203237518 --password secret >/dev/null
rss_status=$(max_rss "$cli_bin" --state "$work/state" status)
rss_demo=$(max_rss "$cli_bin" demo)
rss_fota_small=$(max_rss "$fp_bin" 4096)
rss_fota_large=$(max_rss "$fp_bin" 1048576)
rss_empty=$(max_rss "$empty_bin")

kb() { awk -v b="$1" 'BEGIN { printf "%.1f KB", b / 1000 }'; }
mb() { awk -v k="$1" 'BEGIN { printf "%d KiB (%.1f MB)", k, k * 1024 / 1e6 }'; }
cat <<EOF

| figure | dm-client | libdmclient (issue's reference) |
|---|---|---|
| stripped engine_size - stripped empty main | $(kb $((engine - empty))) | 117 KB stripped library |
| stripped engine_size (raw) / empty main (raw) | $(kb "$engine") / $(kb "$empty") | - |
| the same, size profile: difference | $(kb $((small_engine - small_empty))) | 117 KB stripped library |
| the same, size profile: engine_size (raw) / empty main (raw) | $(kb "$small_engine") / $(kb "$small_empty") | - |
| code+data symbols of syncml_core, dm_tree, dm_client in engine_size | $(kb "$engine_syms") | - |
| stripped dm-client binary (default features) | $(kb "$cli") | - |
| peak heap, FOTA run, 4 KiB image | $(kb "$small_peak") (baseline $(kb "$small_base")) | - |
| peak heap, FOTA run, 1 MiB image | $(kb "$large_peak") | - |
| peak heap excluding package-sized buffers | $(kb "$excl") (target < 256 KB) | - |
| peak heap of the sessions alone | $(kb "$sess") | - |
| heap per image byte in the slot agent's stage | $stage_slope | - |
| peak RSS, footprint example, 4 KiB image | $(mb "$rss_fota_small") | ~12 MB test client |
| peak RSS, footprint example, 1 MiB image | $(mb "$rss_fota_large") | - |
| peak RSS, dm-client status, fresh state | $(mb "$rss_status") | - |
| peak RSS, dm-client demo (FOTA over loopback HTTP, server in process) | $(mb "$rss_demo") | ~12 MB test client |
| peak RSS, empty main | $(mb "$rss_empty") | - |
EOF
