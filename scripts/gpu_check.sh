#!/usr/bin/env bash
# The GPU check for a lent machine: runs the CUDA kernel tests, the GPU training and serving tests, then
# the kernel benchmark, from an already built build directory, and keeps the logs. Whole run: a few
# minutes on an H100/H200 (the training tests train small models to an AUC in three precisions).
#   scripts/gpu_check.sh [BUILD_DIR]        (default: build)
# Logs go to $OUT when set (the device tool's output folder), else to BUILD_DIR/gpu_check/.
# Exit status: non-zero when a test fails or the benchmark's validation fails.
set -uo pipefail

build="${1:-build}"
logs="${OUT:-$build/gpu_check}"
mkdir -p "$logs"
status=0

nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm --format=csv 2>&1 | tee "$logs/gpu.txt" || true
git rev-parse HEAD 2>/dev/null | tee "$logs/commit.txt" || true

# Runs a gtest binary of the build (its ninja target is its file name) with a time limit, logging to
# $logs/NAME.log and NAME.xml; a failure or a missing binary sets the overall status.
run_tests() {
  local what="$1" bin="$build/$2" limit="$3"
  local name
  name=$(basename "$bin")
  if [[ ! -x "$bin" ]]; then
    echo "missing $bin (build it: ninja -C $build $name)"; status=1
    return
  fi
  echo "== $what: $bin"
  timeout "$limit" "$bin" --gtest_output="xml:$logs/$name.xml" 2>&1 | tee "$logs/$name.log"
  local rc=${PIPESTATUS[0]}
  echo "== tests exit status $rc"
  [[ $rc -ne 0 ]] && status=1
  if grep -q "SKIPPED" "$logs/$name.log" && ! grep -q "PASSED.*[1-9]" "$logs/$name.log"; then
    echo "warning: the $what skipped: no device visible?"
  fi
}

run_tests "CUDA kernel tests" tests/kernels/test_kernels_cuda 300
# The model and trainer on the GPU, sharded tables over NCCL included (GpuStep, GpuTrain, GpuSharded).
run_tests "GPU training tests" tests/gpu_train/test_gpu_train 600
# The exported model scored on the GPU against the CPU predictor (with the other serving tests).
run_tests "serving tests" tests/serve/test_serve 300

bench_bin="$build/cuda_kernels_bench"
if [[ -x "$bench_bin" ]]; then
  echo "== kernel benchmark: $bench_bin"
  timeout 240 "$bench_bin" 2>&1 | tee "$logs/cuda_kernels_bench.log"
  rc=${PIPESTATUS[0]}
  echo "== bench exit status $rc"
  [[ $rc -ne 0 ]] && status=1
  grep '^{"bench"' "$logs/cuda_kernels_bench.log" > "$logs/cuda_kernels_bench.json" || true
else
  echo "missing $bench_bin (build it: ninja -C $build cuda_kernels_bench)"; status=1
fi
echo "== logs in $logs; overall status $status"
exit $status
