#!/usr/bin/env bash
# Fuzzes the ASAP and ENRP decoders of crates/wire, and the registrar machine
# of crates/core, with cargo-fuzz (libFuzzer).
#
#   scripts/fuzz.sh [asap|enrp|registrar|all] [seconds per target]  (defaults: all, 60)
#
# Works on the stable toolchain: cargo-fuzz passes nightly -Z flags to rustc,
# which stable accepts with RUSTC_BOOTSTRAP=1. Installs cargo-fuzz if missing.
# Environment:
#   FUZZ_SANITIZER  none (default) or address: the wire crate has no unsafe code,
#                   and without AddressSanitizer libFuzzer runs about 7x more
#                   inputs per second; use address when unsafe code is involved
#   FUZZ_ARGS       extra libFuzzer flags, e.g. "-jobs=2 -workers=2" or "-max_len=65538"
# Corpus: crates/wire/fuzz/corpus/<target>/ (git-ignored, grows across runs),
# seeded from the committed crates/wire/fuzz/seeds/<target>/. A crash leaves
# its input in crates/wire/fuzz/artifacts/<target>/ and makes this script fail;
# docs/FUZZING.md says how to minimise and reproduce it.
set -euo pipefail
cd "$(dirname "$0")/../crates/wire"

target=${1:-all}
seconds=${2:-60}
case $target in
  all) targets=(asap enrp registrar) ;;
  asap | enrp | registrar) targets=("$target") ;;
  *) echo "usage: $0 [asap|enrp|registrar|all] [seconds]" >&2; exit 2 ;;
esac
[[ $seconds =~ ^[0-9]+$ ]] || { echo "seconds must be a whole number" >&2; exit 2; }

if ! cargo fuzz --version >/dev/null 2>&1; then
  echo "fuzz.sh: installing cargo-fuzz" >&2
  cargo install --locked cargo-fuzz
fi

export RUSTC_BOOTSTRAP=1
export CARGO_BUILD_JOBS=${CARGO_BUILD_JOBS:-2}
sanitizer=${FUZZ_SANITIZER:-none}

# Build first, so that the timed runs below are fuzzing only.
if [ "$target" = all ]; then
  cargo fuzz build --sanitizer "$sanitizer"
else
  cargo fuzz build --sanitizer "$sanitizer" "$target"
fi

status=0
for t in "${targets[@]}"; do
  mkdir -p "fuzz/corpus/$t" "fuzz/artifacts"
  echo "fuzz.sh: fuzzing $t for ${seconds}s (sanitizer $sanitizer)" >&2
  # shellcheck disable=SC2086 # FUZZ_ARGS is a list of flags
  if ! nice -n 15 cargo fuzz run --sanitizer "$sanitizer" "$t" "$PWD/fuzz/corpus/$t" "$PWD/fuzz/seeds/$t" -- \
      -max_total_time="$seconds" -dict="$PWD/fuzz/wire.dict" -print_final_stats=1 \
      -rss_limit_mb=2048 -malloc_limit_mb=256 ${FUZZ_ARGS:-} 2>"fuzz/artifacts/$t.log"; then
    status=1
    tail -n 60 "fuzz/artifacts/$t.log" >&2
    echo "fuzz.sh: $t FAILED; input(s) in crates/wire/fuzz/artifacts/$t/, log in crates/wire/fuzz/artifacts/$t.log" >&2
    continue
  fi
  # The closing numbers: executions, speed, coverage.
  grep -E '^#[0-9]+[[:space:]]+DONE|stat::(number_of_executed_units|average_exec_per_sec|new_units_added|peak_rss_mb)' "fuzz/artifacts/$t.log" | sed "s/^/$t: /"
done
exit $status
