#!/usr/bin/env bash
# Interoperability with the reference implementation (Debian's rsplib
# packages) over kernel SCTP in the qemu VM: registrar, PE, PU and ENRP both
# ways, takeovers both ways, sessions across implementations, 1,000 lines
# over netem. Budget: about 5 minutes once the static
# rserpool build is cached (most of it in the emulated guest); the .debs
# are cached in target/vm-cache.
set -euo pipefail
cd "$(dirname "$0")/../.."
exec scripts/vm/rsplib-interop.sh --timeout 600
