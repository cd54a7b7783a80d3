#!/usr/bin/env bash
# The whole stack on one machine: builds what it needs (the same build as scripts/test.sh, so
# after the test command it compiles nothing), generates the 2 KiB parameters once per machine
# (with progress), starts damocles-manager on the embedded devnet and a damocles-worker with
# default configs in DIR, and follows N 2 KiB sectors through their whole life with a live view:
# sealed, persisted through the `fs` objstore plugin store, proven by an accepted WindowPoSt,
# and a block won with a WinningPoSt; then prints a summary read from the chain.
#
#   bash scripts/devnet.sh [DIR]                  DIR defaults to ./devnet-home; reused if present
#   DEVNET_FRESH=1 bash scripts/devnet.sh [DIR]   start from a clean directory
#   DEVNET_SECTORS=4 bash scripts/devnet.sh       how many sectors to seal (default 2)
#   DEVNET_SEAL_ONLY=1 bash scripts/devnet.sh     stop once they are sealed
#
# Logs: DIR/manager.log and DIR/worker.log. A second run continues the same chain.
set -euo pipefail
cd "$(dirname "$0")/.."

export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-/var/tmp/damocles-target}"
export FIL_PROOFS_PARAMETER_CACHE="${FIL_PROOFS_PARAMETER_CACHE:-/var/tmp/filecoin-proof-parameters}"
DIR="${1:-./devnet-home}"

bash scripts/system-deps.sh
echo "==> build" >&2
bash scripts/build.sh
BIN="$CARGO_TARGET_DIR/debug"
echo "==> parameters for 2 KiB sectors" >&2
"$BIN/damocles-manager" util params generate --sector-size 2KiB

args=(devnet --dir "$DIR" --sectors "${DEVNET_SECTORS:-2}" --worker-bin "$BIN/damocles-worker")
if [ "${DEVNET_FRESH:-0}" = "1" ]; then
  args+=(--fresh)
fi
if [ "${DEVNET_SEAL_ONLY:-0}" = "1" ]; then
  args+=(--seal-only)
fi
echo "==> damocles-manager ${args[*]}" >&2
exec "$BIN/damocles-manager" "${args[@]}"
