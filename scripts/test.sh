#!/usr/bin/env bash
# The project's one test command (README "Run all tests"). It installs what the
# tests need on a fresh Debian machine, then runs formatting, lints, docs and
# every test of the workspace. Extra suites hook in below.
set -euo pipefail
cd "$(dirname "$0")/.."

need_pkgs=()
command -v tshark >/dev/null 2>&1 || need_pkgs+=(tshark)
command -v text2pcap >/dev/null 2>&1 || need_pkgs+=(tshark)
# `rserpool demo` is also tested in a real terminal.
command -v tmux >/dev/null 2>&1 || need_pkgs+=(tmux)
if [ ${#need_pkgs[@]} -gt 0 ]; then
  echo "test.sh: installing ${need_pkgs[*]}" >&2
  export DEBIAN_FRONTEND=noninteractive
  SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  echo "wireshark-common wireshark-common/install-setuid boolean false" | $SUDO debconf-set-selections || true
  $SUDO apt-get update -qq
  $SUDO apt-get install -y -qq --no-install-recommends "${need_pkgs[@]}" >/dev/null
fi

# Workspace members only: the vendored crates under third_party/ keep their
# upstream formatting so that their patches stay readable.
cargo fmt --check
cargo clippy --workspace --all-targets --locked -- -D warnings
RUSTDOCFLAGS="-D warnings" cargo doc --workspace --no-deps --locked
if command -v cargo-nextest >/dev/null 2>&1; then
  cargo nextest run --workspace --exclude sctp-proto --locked --no-fail-fast
else
  cargo test --workspace --exclude sctp-proto --locked --no-fail-fast
fi
# The vendored sctp-proto's tests bind fixed UDP ports from a per-process
# counter: they must share one process (cargo test), not one each (nextest).
cargo test -p sctp-proto --locked --no-fail-fast
cargo test --workspace --doc --locked

# Optional suites, each a script of its own (fuzz smoke, VM tests, ...).
for extra in scripts/ci.d/*.sh; do
  [ -e "$extra" ] || continue
  echo "test.sh: running $extra" >&2
  bash "$extra"
done
