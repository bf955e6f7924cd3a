#!/usr/bin/env bash
# On a lent GPU machine, from the repository root, with the bundle of scripts/gpu_bundle.sh: the CUDA
# tests and the kernel benchmark (scripts/gpu_check.sh), the whole DLRM / DCNv2 step with the fused
# embedding update on and off and in a CUDA graph, and with --throughput the training throughput against PyTorch on the
# same GPU (bench/gpu_throughput.sh, about 3 minutes), and with --loader `recforge bench loader` on the
# machine's cores (about 1 minute). Logs go to $OUT (the device tool's output folder) when set, else to
# DIR/logs.
#   bash scripts/gpu_run.sh [DIR] [--throughput] [--loader]       (DIR default .carry/gpu)
set -uo pipefail
cd "$(dirname "$0")/.."
dir=${1:-.carry/gpu}
[[ "$dir" == --* ]] && dir=.carry/gpu
throughput=0 loader=0
for a in "$@"; do
  [[ "$a" == --throughput ]] && throughput=1
  [[ "$a" == --loader ]] && loader=1
done
export OUT=${OUT:-$dir/logs}
mkdir -p "$OUT"
tar -C "$dir" -xJf "$dir/lib.tar.xz"
[[ -f "$dir/build.tar.xz" ]] && tar -C "$dir" -xJf "$dir/build.tar.xz"
export LD_LIBRARY_PATH=$(cd "$dir" && pwd)/lib:${LD_LIBRARY_PATH:-}
# Open MPI refuses root without these (the singleton MPI_Init of the training tests runs as root there).
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
b=$dir/build
timeout 60 "$b/tests/core/test_core_cuda" > "$OUT/test_core_cuda.log" 2>&1
core=$?
grep -E "^\[  (PASSED|FAILED|SKIPPED) " "$OUT/test_core_cuda.log"
bash scripts/gpu_check.sh "$b" 2>&1 | grep -vE "^\[ +(RUN|OK) +\]" | grep -vE '^\{"bench"' | tail -n 100
status=${PIPESTATUS[0]}
[[ $core -ne 0 ]] && status=1
# The device tool brings back at most 8 files: drop the ones the logs repeat.
rm -f "$OUT"/*.xml "$OUT"/*.json "$OUT"/commit.txt
# With a failing training test, measure the SparseGrad path only.
extra=""
grep -q "^\[  FAILED  \]" "$OUT/test_gpu_train.log" 2>/dev/null && extra="--train.fused_embedding_update=false"
echo "== fused embedding update on / off, on with the step in a CUDA graph, and both with the hashed (train.deterministic=false) update (bf16, row-wise Adagrad)${extra:+, fused path skipped: a training test failed}"
for c in "configs/dlrm_criteo_kaggle.ini 16384" "configs/dlrm_criteo_kaggle.ini 2048" "configs/dcnv2_criteo.ini 2048"; do
  read -r config batch <<<"$c"
  for mode in "true false true" "false false true" "true true true" "true false false" "true true false"; do
    read -r fused graph det <<<"$mode"
    [[ -n "$extra" && $fused == true ]] && continue
    timeout 120 "$b/recforge" bench dlrm --config "$config" --train.device=cuda --train.precision=bf16 \
      --train.batch_size="$batch" --optimizer.sparse=rowwise_adagrad --bench.steps=30 --bench.warmup=5 \
      --train.fused_embedding_update=$fused --train.cuda_graph=$graph --train.deterministic=$det 2>&1 | tail -n 9
  done
  # The batch copied from page-locked host memory every step, as from the shard loader.
  # Last: replayed without the (for recforge's loaders redundant) index checks.
  [[ -z "$extra" && $batch == 2048 ]] && for mode in "false true" "true true" "true false"; do
    read -r graph checks <<<"$mode"
    timeout 120 "$b/recforge" bench dlrm --config "$config" --train.device=cuda --train.precision=bf16 \
      --train.batch_size="$batch" --optimizer.sparse=rowwise_adagrad --bench.steps=30 --bench.warmup=5 \
      --bench.host_batches=true --train.cuda_graph=$graph --train.bounds_checks=$checks 2>&1 | tail -n 9
  done
done > "$OUT/fused.log" 2>&1
grep -E "^\{" "$OUT/fused.log"
if [[ $throughput == 1 ]]; then
  RF_EXTRA_ARGS="$extra" RF_STEPS=20 PT_WINDOWS=3 timeout 330 bash bench/gpu_throughput.sh "$b/recforge" python3 \
    > "$OUT/throughput.log" 2>&1
  tail -n 12 "$OUT/throughput.log" | grep -v '^{'
fi
if [[ $loader == 1 ]]; then
  timeout 240 "$b/recforge" bench loader --config configs/dlrm_criteo_kaggle.ini > "$OUT/loader.log" 2>&1
  tail -n 14 "$OUT/loader.log"
fi
exit "$status"
