#!/usr/bin/env bash
# Sets up, builds and runs every recforge test: installs the Debian packages, builds the default
# preset (CUDA backend compiled when the toolkit is present; GPU tests skip without a device), runs the
# unit, CUDA and PyTorch-parity tests, then the CPU unit tests again under AddressSanitizer + UBSan.
set -euo pipefail
cd "$(dirname "$0")/.."

bash scripts/install-deps.sh
jobs=$(nproc)

echo "== build (default preset)"
cmake --preset default >/dev/null
cmake --build --preset default -j "$jobs"
echo "== tests (default preset)"
ctest --preset default -j "$jobs" --timeout 900

if [ "${RECFORGE_SKIP_SANITIZE:-0}" != 1 ]; then
  echo "== build (sanitize preset: AddressSanitizer + UBSan)"
  cmake --preset sanitize >/dev/null
  cmake --build --preset sanitize -j "$jobs"
  echo "== tests (sanitize preset, unit label)"
  ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
    ctest --preset sanitize -j "$jobs" --timeout 900
fi
