#!/usr/bin/env bash
# Interoperability with the reference implementation (Debian's rsplib
# packages) over kernel SCTP in the qemu VM: registrar, PE, PU and ENRP both
# ways, takeovers both ways, sessions across implementations, 1,000 lines
# over netem, hsdump against both registrars, takeover suggestions both ways
# (steps 1-9, scripts/vm/README.md). Budget: about 6 minutes (the guest
# runs ~340 s) once the static rserpool build is cached (most of it in the
# emulated guest); the .debs are cached in target/vm-cache.
set -euo pipefail
cd "$(dirname "$0")/../.."
exec scripts/vm/rsplib-interop.sh --timeout 600
