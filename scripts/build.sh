#!/usr/bin/env bash
# The one build of the workspace that both README commands use: libraries (with the objstore
# plugins), binaries and test targets, in the dev profile with optimised dependencies.
# Building the same targets keeps cargo's feature resolution the same (dev-dependencies add
# features to shared crates), so after either command the other compiles nothing. Benches are
# not built: they build when run (`cargo bench`).
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-/var/tmp/damocles-target}"
exec cargo build --workspace --lib --bins --tests "$@"
