#!/usr/bin/env bash
# Kernel SCTP backend tests in a qemu VM (CI hosts have no SCTP module).
# Budget: about 1-2 minutes (static test build + ~10 s boot and run); the
# kernel package is cached in target/vm-cache between runs.
set -euo pipefail
cd "$(dirname "$0")/../.."
exec scripts/vm/run-kernel-tests.sh --timeout 300
