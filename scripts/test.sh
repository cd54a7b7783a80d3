#!/usr/bin/env bash
# The project's test command. On a fresh machine it builds everything, generates the missing
# 2 KiB Groth16 parameters once per machine (15-20 minutes the first time), then runs every
# test of the workspace.
#
# Environment:
#   CARGO_TARGET_DIR            build directory (default /var/tmp/damocles-target, reused across runs)
#   FIL_PROOFS_PARAMETER_CACHE  parameter cache (default /var/tmp/filecoin-proof-parameters)
set -euo pipefail
cd "$(dirname "$0")/.."

export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-/var/tmp/damocles-target}"
export FIL_PROOFS_PARAMETER_CACHE="${FIL_PROOFS_PARAMETER_CACHE:-/var/tmp/filecoin-proof-parameters}"
export RUST_BACKTRACE="${RUST_BACKTRACE:-1}"

step() { printf '\n==> %s\n' "$*" >&2; }

if ! command -v cargo >/dev/null 2>&1; then
  echo "cargo is required (https://rustup.rs); rust-toolchain.toml pins the version" >&2
  exit 1
fi

step "system packages (libclang for the RocksDB bindings, valgrind)"
bash scripts/system-deps.sh

TOOLS="${DAMOCLES_TOOLS_DIR:-/var/tmp/damocles-tools}"
step "S3 test server (built once per machine into $TOOLS)"
# s3s-fs from crates.io with S3's 404 for directory keys (tools/s3-test-server); rebuilt only
# when its sources change.
stamp="$(cat tools/s3-test-server/Cargo.toml tools/s3-test-server/Cargo.lock tools/s3-test-server/src/*.rs | sha256sum | cut -d' ' -f1)"
if [ ! -x "$TOOLS/bin/damocles-s3-test-server" ] || [ "$(cat "$TOOLS/damocles-s3-test-server.stamp" 2>/dev/null)" != "$stamp" ]; then
  cargo install --locked --force --path tools/s3-test-server --root "$TOOLS" --target-dir "$TOOLS/target"
  echo "$stamp" > "$TOOLS/damocles-s3-test-server.stamp"
fi
export DAMOCLES_S3_TEST_SERVER="$TOOLS/bin/damocles-s3-test-server"


step "build (tests, binaries, plugins and benches)"
cargo build --workspace --all-targets

step "parameters for 2 KiB sectors (generated once per machine into $FIL_PROOFS_PARAMETER_CACHE)"
"$CARGO_TARGET_DIR/debug/damocles-manager" util params generate --sector-size 2KiB

step "tests"
if cargo nextest --version >/dev/null 2>&1; then
  cargo nextest run --workspace --no-fail-fast --failure-output final
  # nextest does not run doc tests.
  cargo test --workspace --doc
else
  cargo test --workspace --no-fail-fast
fi
