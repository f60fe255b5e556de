#!/usr/bin/env bash
# The third-party DM client the interoperability tests run (PyPI imitune 0.2.0, an
# XML DM 1.2 client), in a virtual environment under target/. Idempotent.
set -euo pipefail
cd "$(dirname "$0")/.."
venv=target/interop-venv
if [ -x "$venv/bin/python" ] && "$venv/bin/python" -c 'import imitune' 2>/dev/null; then
    exit 0
fi
mkdir -p target
python3 -m venv "$venv"
# Its metadata asks for Python 3.12; the code runs on 3.11 (PEERS.md).
"$venv/bin/pip" install -q --disable-pip-version-check --ignore-requires-python imitune==0.2.0
"$venv/bin/python" -c 'import imitune.oma_dm_client' 
echo "imitune installed in $venv"
