#!/usr/bin/env bash
# One-command set-up on a Debian machine with Rust installed: the system packages the
# tests and benchmarks use, then a release build of the workspace.
set -euo pipefail
cd "$(dirname "$0")/.."
SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo"
need=()
command -v xml2wbxml >/dev/null 2>&1 || need+=(libwbxml2-utils)
command -v python3 >/dev/null 2>&1 || need+=(python3)
command -v hyperfine >/dev/null 2>&1 || need+=(hyperfine)
[ -x /usr/bin/time ] || need+=(time)
if [ ${#need[@]} -gt 0 ]; then
    $SUDO apt-get update -qq
    $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}"
fi
scripts/interop-venv.sh
cargo build --release --workspace
echo "set-up done: target/release/dm-server serve; target/release/dm-client demo; target/release/syncml --help, target/release/dm-tree --help"
