#!/usr/bin/env bash
# Runs every libFuzzer target of fuzz/ for a bounded time each, starting from the seed corpora
# in fuzz/corpus/<target> (new inputs go to a scratch directory, so the repository is not
# touched), and prints the executions per target. A crash fails the run and leaves the input
# in fuzz/artifacts/<target>/. Installs, once per machine, a nightly toolchain and cargo-fuzz
# when they are missing.
#
# Environment:
#   FUZZ_SECONDS             time per target (default 60)
#   FUZZ_TARGETS             targets to run (default: all of `cargo fuzz list`)
#   DAMOCLES_FUZZ_TARGET_DIR build directory (default /var/tmp/damocles-fuzz-target, reused)
set -euo pipefail
cd "$(dirname "$0")/../fuzz"

seconds="${FUZZ_SECONDS:-60}"
export CARGO_TARGET_DIR="${DAMOCLES_FUZZ_TARGET_DIR:-/var/tmp/damocles-fuzz-target}"

if ! rustup run nightly rustc --version >/dev/null 2>&1; then
  echo "==> installing a nightly toolchain (once per machine)" >&2
  rustup toolchain install nightly --profile minimal
fi
if ! command -v cargo-fuzz >/dev/null 2>&1; then
  echo "==> installing cargo-fuzz (once per machine)" >&2
  cargo install cargo-fuzz --locked
fi

# -a: debug assertions (overflow checks) on, as in tests.
cargo +nightly fuzz build -O -a
targets="${FUZZ_TARGETS:-$(cargo +nightly fuzz list)}"
scratch="$(mktemp -d)"
trap 'rm -rf "$scratch"' EXIT
summary=()
for t in $targets; do
  mkdir -p "$scratch/$t"
  log="$scratch/$t.log"
  echo "==> fuzz $t for ${seconds}s" >&2
  if ! cargo +nightly fuzz run -O -a "$t" "$scratch/$t" "corpus/$t" -- \
      -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 -print_final_stats=1 >"$log" 2>&1; then
    tail -n 60 "$log" >&2
    echo "fuzz target $t failed; the input is in fuzz/artifacts/$t/" >&2
    exit 1
  fi
  runs="$(grep -o 'Done [0-9]* runs in [0-9]* second' "$log" | tail -n 1)"
  summary+=("$(printf '%-16s %s' "$t" "${runs:-?}")")
done
printf '\n==> fuzz executions (no crash)\n' >&2
printf '%s\n' "${summary[@]}" >&2
