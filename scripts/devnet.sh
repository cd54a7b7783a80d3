#!/usr/bin/env bash
# Starts damocles-manager on the embedded devnet (one 2 KiB miner, t010000) in a directory of
# your choice, building what it needs and generating the 2 KiB parameters once per machine.
#
#   bash scripts/devnet.sh [DIR]      DIR defaults to ./devnet-home; an existing one is reused
#   DEVNET_FRESH=1 bash scripts/devnet.sh [DIR]   start from a clean directory
#
# Stop it with Ctrl-C. While it runs, `target/.../damocles-manager util chain head` and the
# other `util` commands talk to it on :1789.
set -euo pipefail
cd "$(dirname "$0")/.."

export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-/var/tmp/damocles-target}"
export FIL_PROOFS_PARAMETER_CACHE="${FIL_PROOFS_PARAMETER_CACHE:-/var/tmp/filecoin-proof-parameters}"
DIR="${1:-./devnet-home}"

bash scripts/system-deps.sh
echo "==> build" >&2
cargo build -p damocles-manager -p damocles-worker --bins
BIN="$CARGO_TARGET_DIR/debug"
echo "==> parameters for 2 KiB sectors" >&2
"$BIN/damocles-manager" util params generate --sector-size 2KiB

if [ "${DEVNET_FRESH:-0}" = "1" ] && [ -d "$DIR" ]; then
  echo "==> removing $DIR" >&2
  rm -rf "$DIR"
fi
if [ ! -f "$DIR/sector-manager.cfg" ]; then
  "$BIN/damocles-manager" --home "$DIR" daemon init --devnet --miner 10000 --sector-size 2KiB
else
  echo "==> reusing $DIR (DEVNET_FRESH=1 starts clean)" >&2
fi
echo "==> damocles-manager on the devnet, home $DIR; Ctrl-C stops it" >&2
exec "$BIN/damocles-manager" --home "$DIR" daemon run --listen 127.0.0.1:1789
