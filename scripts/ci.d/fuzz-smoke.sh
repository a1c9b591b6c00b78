#!/usr/bin/env bash
# CI smoke fuzzing of the wire decoders: each target about 30 s on top of the
# committed seeds (docs/FUZZING.md). Fails on any crash, panic, property
# violation or allocation beyond budget. FUZZ_SMOKE_SECONDS overrides the time.
set -euo pipefail
exec "$(dirname "$0")/../fuzz.sh" all "${FUZZ_SMOKE_SECONDS:-30}"
