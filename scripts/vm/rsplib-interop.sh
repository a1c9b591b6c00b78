#!/usr/bin/env bash
# Interoperability against the reference implementation (rsplib, Debian's
# rsplib-registrar and rsplib-tools) over kernel SCTP inside the test VM.
# Builds the rserpool binary statically, boots the VM of run-kernel-tests.sh
# with the rsplib packages and runs rsplib-interop-guest.sh there:
#   1  rspregistrar + our PE + our PU
#   2  our registrar + rspserver (PE) + our PU + rspterminal (PU)
#   3  ENRP: our registrar and rspregistrar as peers, a PE at each, each pool
#      resolved at the other registrar; hsdump reads our handle table
#   4  takeovers: a registrar of one implementation is killed, one of the
#      other takes its PE over
#   5  sessions: our terminal with rspserver's echo, rspterminal with our
#      echo PE, and a session failing over between the implementations
#   6  an echo session of 1,000 lines over netem (10 % loss, 50 ms delay)
#      on the guest's loopback, over SCTP over UDP and kernel SCTP
#   7  rsplib's pingpongclient with our pingpong PE
#   8  our hsdump reads rspregistrar's handlespace (as a peer) and ours
#   9  takeover suggestion (T flag) both ways between our registrar
#      (balanced) and rspregistrar -supporttakeoversuggestion (XOR rule),
#      both handlespaces polled with hsdump: no PE ever missing, no ping-pong
# Each check prints "INTEROP <name>: PASS|FAIL"; the script exits 0 only if
# all passed. The console log is target/vm-cache/last-boot.log, the logs of
# every program run in the guest land in target/vm-cache/rsplib-interop-logs/.
#
# Usage: scripts/vm/rsplib-interop.sh [--timeout SECS] [--release] [--steps "N ..."]
#        [--rsplib-loglevel 0-9]
set -euo pipefail

ROOT="$(cd "$(dirname "$0")/../.." && pwd)"
cd "$ROOT"
TIMEOUT=600
PROFILE=debug
STEPS="1 2 3 4 5 6 7 8 9"
RSPLIB_LOGLEVEL=3
while [ $# -gt 0 ]; do
  case "$1" in
    --timeout) TIMEOUT="$2"; shift 2 ;;
    --release) PROFILE=release; shift ;;
    --steps) STEPS="$2"; shift 2 ;;
    --rsplib-loglevel) RSPLIB_LOGLEVEL="$2"; shift 2 ;;
    -h|--help) sed -n '2,26p' "$0"; exit 0 ;;
    *) echo "rsplib-interop: unknown option $1" >&2; exit 2 ;;
  esac
done

triple=x86_64-unknown-linux-gnu
profile_flag=()
[ "$PROFILE" = release ] && profile_flag=(--release)
echo "rsplib-interop: building rserpool statically ($PROFILE)" >&2
# As in project-tests.sh: --target keeps proc macros and build scripts on the
# host's default flags, which cannot be linked statically.
CARGO_TARGET_X86_64_UNKNOWN_LINUX_GNU_RUSTFLAGS="-C target-feature=+crt-static" \
  CARGO_BUILD_JOBS="${CARGO_BUILD_JOBS:-2}" \
  cargo build -p rserpool-cli --bin rserpool --target "$triple" "${profile_flag[@]}"

BINDIR="$(mktemp -d "${TMPDIR:-/tmp}/rsplib-interop.XXXXXX")"
trap 'rm -rf "$BINDIR"' EXIT
# Debug info would make the initramfs much larger and slower to unpack.
strip -o "$BINDIR/rserpool" "target/$triple/$PROFILE/rserpool"
cp scripts/vm/rsplib-interop-guest.sh "$BINDIR/rsplib-interop-guest.sh"
chmod +x "$BINDIR/rsplib-interop-guest.sh"

SHARE="$ROOT/target/vm-cache/rsplib-interop-share"
rm -rf "$SHARE" && mkdir -p "$SHARE/logs"

# The guest script never stops at the first failure; run-kernel-tests.sh
# turns its exit status into the PASS/FAIL marker.
set +e
scripts/vm/run-kernel-tests.sh --no-default --timeout "$TIMEOUT" --share "$SHARE" \
  --bin "$BINDIR/rserpool" --bin "$BINDIR/rsplib-interop-guest.sh" \
  --deb rsplib-registrar --deb rsplib-tools --deb iproute2 --deb-deps \
  --deb-alone rsplib-services \
  --module sch_netem \
  --run "INTEROP_STEPS='$STEPS' RSPLIB_LOGLEVEL=$RSPLIB_LOGLEVEL rsplib-interop-guest.sh" | tee "$BINDIR/console"
rc=${PIPESTATUS[0]}
rm -rf "$ROOT/target/vm-cache/rsplib-interop-logs"
mv "$SHARE/logs" "$ROOT/target/vm-cache/rsplib-interop-logs" && rm -rf "$SHARE"
echo "rsplib-interop: summary" >&2
grep '^INTEROP ' "$BINDIR/console" >&2 || true
exit "$rc"
