#!/usr/bin/env bash
# Records the conformance corpus's recorded sessions into fixtures/sessions/
# (the hand-written ones are not touched). See fixtures/sessions/CORPUS.md.
#
#   scripts/record-corpus.sh                # every recorded scenario
#   scripts/record-corpus.sh NAME...        # only these (names from scripts/corpus/scenarios.py)
#   scripts/record-corpus.sh --dry-run ...  # play them against dm-server without recording
#   scripts/record-corpus.sh --keep ...     # keep the temporary folder (logs, client states)
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build -q -p dm-server -p dm-client -p syncml-core --bins
exec python3 scripts/corpus/record.py "$@"
