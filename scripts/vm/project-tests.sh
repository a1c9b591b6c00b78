# Sourced by run-kernel-tests.sh: the project's default VM payload. Builds
# rserpool-net's test binaries statically (the initramfs has no libc) and
# plans the guest steps. Appends to BINS, RUNS and MODULES.
#
# Test binaries taken, by cargo target name (tests/NAME.rs):
#   kernel       kernel-backend specific tests (multi-homing, kernel peers)
#   conformance  the backend-generic suite, filtered to the kernel backend
#   interop      userland SCTP-over-UDP against kernel SCTP with encapsulation
# Missing ones are skipped with a note, so the VM keeps working while
# suites are added.

add_project_tests() {
  local triple=x86_64-unknown-linux-gnu
  # glibc can link statically; musl would need a target that is not
  # installed here (and cannot be downloaded on these hosts).
  local flags="-C target-feature=+crt-static"
  local json="$WORK/cargo-tests.json"
  log "building rserpool-net tests statically ($triple, $flags)"
  # --target keeps proc macros and build scripts on the host's default
  # flags, which cannot be linked statically.
  CARGO_TARGET_X86_64_UNKNOWN_LINUX_GNU_RUSTFLAGS="$flags" \
    CARGO_BUILD_JOBS="${CARGO_BUILD_JOBS:-2}" \
    cargo test -p rserpool-net --no-run --target "$triple" \
    --message-format=json-render-diagnostics >"$json"
  local exe name stripped found=0
  mkdir -p "$WORK/bins"
  for exe in $(grep -o '"executable":"[^"]*"' "$json" | cut -d'"' -f4); do
    name="$(basename "$exe")"
    name="${name%-*}"
    case "$name" in
      kernel | conformance | interop) ;;
      *) continue ;;
    esac
    stripped="$WORK/bins/$name"
    # Debug info would make the initramfs ten times larger and slower to
    # unpack under emulation; backtraces still name functions.
    strip -o "$stripped" "$exe" 2>/dev/null || cp "$exe" "$stripped"
    BINS+=("$stripped")
    found=$((found + 1))
  done
  [ "$found" -gt 0 ] || die "no kernel test binaries were built"

  # Documentation prefixes, only ever inside the isolated guest (-nic none):
  # 198.51.100.1 is a non-loopback local address (SCTP will not use
  # loopback sources towards other destinations), and TEST-NET-1 is routed
  # into lo without being local, so an INIT to it is dropped on input and
  # only the handshake timer can end the attempt. The "peer lost" test
  # deletes 198.51.100.2 under a live association.
  RUNS+=("ip addr add 198.51.100.1/32 dev lo && ip addr add 198.51.100.2/32 dev lo && ip route add 192.0.2.0/24 dev lo src 198.51.100.1")
  local env="RSERPOOL_REQUIRE_KERNEL_SCTP=1 RSERPOOL_VM=1 RUST_BACKTRACE=1"
  if [ -e "$WORK/bins/kernel" ]; then
    RUNS+=("$env kernel --test-threads=1 --nocapture")
  fi
  if [ -e "$WORK/bins/conformance" ]; then
    RUNS+=("$env conformance --test-threads=1 kernel")
  else
    log "note: no tests/conformance.rs yet; backend-generic suite not run"
  fi
  if [ -e "$WORK/bins/interop" ]; then
    # The kernel's UDP encapsulation listener; only interop needs it (it
    # takes UDP port 9899 in the guest).
    RUNS+=("sysctl -w net.sctp.udp_port=9899 && $env interop --test-threads=1 --nocapture; rc=\$?; sysctl -w net.sctp.udp_port=0; exit \$rc")
  else
    log "note: no tests/interop.rs yet; kernel/userland interop not run"
  fi
}
