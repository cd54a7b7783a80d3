#!/usr/bin/env bash
# The project's test command. On a fresh machine it installs the system packages, builds the S3
# test server and the workspace, generates the missing 2 KiB Groth16 parameters once per
# machine (15-20 minutes the first time), then runs every test of the workspace. Each phase
# prints its duration, and a summary of them closes the run.
#
# Environment:
#   CARGO_TARGET_DIR            build directory (default /var/tmp/damocles-target, reused across runs)
#   FIL_PROOFS_PARAMETER_CACHE  parameter cache (default /var/tmp/filecoin-proof-parameters)
#   DAMOCLES_TOOLS_DIR          where the S3 test server is installed (default /var/tmp/damocles-tools)
set -euo pipefail
cd "$(dirname "$0")/.."

export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-/var/tmp/damocles-target}"
export FIL_PROOFS_PARAMETER_CACHE="${FIL_PROOFS_PARAMETER_CACHE:-/var/tmp/filecoin-proof-parameters}"
export RUST_BACKTRACE="${RUST_BACKTRACE:-1}"

if ! command -v cargo >/dev/null 2>&1; then
  echo "cargo is required (https://rustup.rs); rust-toolchain.toml pins the version" >&2
  exit 1
fi

phases=()
# phase NAME COMMAND...: runs COMMAND, then prints and records how long it took.
phase() {
  local name="$1"
  shift
  printf '\n==> %s\n' "$name" >&2
  local start=$SECONDS rc=0
  "$@" || rc=$?
  local took=$((SECONDS - start))
  if [ "$rc" -ne 0 ]; then
    phases+=("$(printf '%-58s %5ds  FAILED (exit %d)' "$name" "$took" "$rc")")
    exit "$rc"
  fi
  phases+=("$(printf '%-58s %5ds' "$name" "$took")")
  printf '==> %s: %ds\n' "$name" "$took" >&2
}
summary() {
  printf '\n==> phases\n' >&2
  for p in "${phases[@]}"; do printf '  %s\n' "$p" >&2; done
  printf '  %-58s %5ds\n' "total" "$SECONDS" >&2
}
on_exit() {
  local rc=$?
  summary
  exit $rc
}
trap on_exit EXIT

phase "system packages (libclang for RocksDB, valgrind, python3)" bash scripts/system-deps.sh

TOOLS="${DAMOCLES_TOOLS_DIR:-/var/tmp/damocles-tools}"
# s3s-fs from crates.io with S3's 404 for directory keys (tools/s3-test-server); built once per
# machine and again only when its sources change.
s3_server() {
  local stamp
  stamp="$(cat tools/s3-test-server/Cargo.toml tools/s3-test-server/Cargo.lock tools/s3-test-server/src/*.rs | sha256sum | cut -d' ' -f1)"
  if [ ! -x "$TOOLS/bin/damocles-s3-test-server" ] || [ "$(cat "$TOOLS/damocles-s3-test-server.stamp" 2>/dev/null)" != "$stamp" ]; then
    cargo install --locked --force --path tools/s3-test-server --root "$TOOLS" --target-dir "$TOOLS/target"
    echo "$stamp" > "$TOOLS/damocles-s3-test-server.stamp"
  else
    echo "up to date: $TOOLS/bin/damocles-s3-test-server" >&2
  fi
}
phase "S3 test server (once per machine, into $TOOLS)" s3_server
export DAMOCLES_S3_TEST_SERVER="$TOOLS/bin/damocles-s3-test-server"

phase "build (libraries, plugins, binaries, tests; no benches)" bash scripts/build.sh
# The process-level tests (tests/) would otherwise run the same build once per test process.
export DAMOCLES_TESTS_PREBUILT=1

phase "2 KiB parameters (once per machine, into $FIL_PROOFS_PARAMETER_CACHE)" \
  "$CARGO_TARGET_DIR/debug/damocles-manager" util params generate --sector-size 2KiB

# The runner: cargo-nextest, whose test groups (.config/nextest.toml) run the cluster tests one
# at a time; installed from crates.io once per machine when missing, at a pinned version.
NEXTEST_VERSION=0.9.143
export PATH="$PATH:$TOOLS/bin"
nextest() {
  if cargo nextest --version >/dev/null 2>&1; then
    echo "present: $(cargo nextest --version | head -n 1)" >&2
  else
    cargo install --locked cargo-nextest --version "$NEXTEST_VERSION" --root "$TOOLS"
  fi
}
phase "cargo-nextest (once per machine)" nextest

NEXTEST_OUT="$(mktemp)"
run_tests() {
  cargo nextest run --workspace --no-fail-fast --failure-output final 2>&1 | tee "$NEXTEST_OUT"
  return "${PIPESTATUS[0]}"
}
phase "tests (cargo nextest)" run_tests
# nextest does not run doc tests.
phase "doc tests" cargo test --workspace --doc

# The tally of the whole run last, so it is the closing line (the doc tests' own lines count
# only the doc tests).
summary_line="$(grep -E '^ *Summary \[' "$NEXTEST_OUT" | tail -n 1)"
rm -f "$NEXTEST_OUT"
passed="$(sed -nE 's/.* ([0-9]+) passed.*/\1/p' <<<"$summary_line")"
failed="$(sed -nE 's/.* ([0-9]+) failed.*/\1/p' <<<"$summary_line")"
trap - EXIT
summary
printf '\ntests: %s passed, %s failed\n' "${passed:-0}" "${failed:-0}"
