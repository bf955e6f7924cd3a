#!/usr/bin/env bash
# Sets up, builds and runs the main job: generates the synthetic Criteo-format data set, then trains
# the tiny DLRM of configs/dlrm_tiny.ini on it and prints the test AUC next to the planted model's.
set -euo pipefail
cd "$(dirname "$0")/.."

bash scripts/install-deps.sh
cmake --preset default >/dev/null
cmake --build --preset default -j "$(nproc)" --target recforge
./build/recforge synth --config configs/dlrm_tiny.ini "$@"
./build/recforge train --config configs/dlrm_tiny.ini "$@"
