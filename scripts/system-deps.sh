#!/usr/bin/env bash
# System packages the build needs, installed when missing (Debian; needs root or sudo):
#   libclang   bindgen generates the RocksDB bindings at build time
#   valgrind   the objstore plugins are leak-checked under it
#   python3    the example Python ext-processor (docs/examples/transfer_s3.py) is tested
set -euo pipefail

missing=()
if ! ldconfig -p 2>/dev/null | grep -q 'libclang\(-[0-9.]*\)\?\.so' \
  && ! ls /usr/lib/llvm-*/lib/libclang.so >/dev/null 2>&1 \
  && [ -z "${LIBCLANG_PATH:-}" ]; then
  missing+=(libclang-dev)
fi
command -v valgrind >/dev/null 2>&1 || missing+=(valgrind)
command -v python3 >/dev/null 2>&1 || missing+=(python3)


if [ "${#missing[@]}" -eq 0 ]; then
  exit 0
fi
echo "installing system packages: ${missing[*]}" >&2
SUDO=""
if [ "$(id -u)" -ne 0 ]; then
  if command -v sudo >/dev/null 2>&1; then SUDO="sudo"; else
    echo "missing system packages (${missing[*]}) and no root: install them with apt-get" >&2
    exit 1
  fi
fi
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get install -y --no-install-recommends "${missing[@]}" >&2 \
  || { $SUDO apt-get update >&2 && $SUDO apt-get install -y --no-install-recommends "${missing[@]}" >&2; }
