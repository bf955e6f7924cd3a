#!/usr/bin/env bash
# GPU training throughput: recforge (train.device=cuda) against PyTorch eager on the same GPU in the
# same run, for the DLRM Criteo-Kaggle shape (batch 2048 and 16384) and the DCNv2 shape, in fp32, bf16
# and fp16 (recforge: 16-bit GEMM operands, fp32 master weights, dynamic loss scaling for fp16;
# PyTorch: torch.autocast, GradScaler for fp16). SGD on both sides. Prints a table and one JSON line
# per case with samples_per_s, pytorch_samples_per_s and ratio. Runs prebuilt binaries only (the GPU
# machine has no build dependencies): pass the recforge binary; LD_LIBRARY_PATH must reach its libs.
#   bench/gpu_throughput.sh path/to/recforge [python3]     (about 2-3 minutes on an H200)
# RF_EXTRA_ARGS: more `recforge bench dlrm` flags for every case (e.g. --train.fused_embedding_update=false).
set -euo pipefail
cd "$(dirname "$0")/.."
rf=${1:?usage: bench/gpu_throughput.sh path/to/recforge [python3]}
py=${2:-python3}
[ -x "$rf" ] || { echo "gpu_throughput.sh: '$rf' is not an executable" >&2; exit 2; }
$py -c 'import torch, sys; sys.exit(0 if torch.cuda.is_available() else "torch sees no CUDA device")'
# Few steps, few windows: the step is milliseconds; table setup (host init of the weights) dominates.
rf_steps=${RF_STEPS:-30}; rf_warmup=${RF_WARMUP:-5}
pt_steps=${PT_STEPS:-10}; pt_windows=${PT_WINDOWS:-3}; pt_warmup=${PT_WARMUP:-5}

results=()
run_case() {  # config batch dtype
  local config=$1 batch=$2 dtype=$3
  local eff; eff=$("$rf" bench --config "$config" --print-config)
  get() { printf '%s\n' "$eff" | awk -v s="[$1]" -v k="$2" '$0==s{f=1;next} /^\[/{f=0} f&&$1==k{print $3}'; }
  local model dim bottom top rows tables layers rank lr
  model=$(get model type); dim=$(get model embedding_dim); bottom=$(get model bottom_mlp); top=$(get model top_mlp)
  rows=$(get bench rows_per_table); tables=$(get bench tables); layers=$(get model cross_layers)
  rank=$(get model cross_rank); lr=$(get optimizer lr)
  echo "== $model batch $batch $dtype: recforge"
  local rf_out
  rf_out=$("$rf" bench dlrm --config "$config" --train.device=cuda --train.precision="$dtype" \
    --train.batch_size="$batch" --optimizer.dense=sgd --optimizer.sparse=sgd \
    --bench.steps="$rf_steps" --bench.warmup="$rf_warmup" ${RF_EXTRA_ARGS:-})
  printf '%s\n' "$rf_out"
  local rfs; rfs=$(printf '%s\n' "$rf_out" | tail -n 1 | sed -E 's/.*"samples_per_s": ([0-9.]+).*/\1/')
  echo "== $model batch $batch $dtype: pytorch"
  local pt_out
  pt_out=$($py bench/pytorch_dlrm.py --device cuda --dtype "$dtype" --model "$model" --rows "$rows" \
    --tables "$tables" --dim "$dim" --bottom "$bottom" --top "$top" --cross-layers "$layers" --cross-rank "$rank" \
    --batch "$batch" --lr "$lr" --warmup "$pt_warmup" --steps "$pt_steps" --windows "$pt_windows")
  printf '%s\n' "$pt_out"
  local pts; pts=$(printf '%s\n' "$pt_out" | tail -n 1 | sed -E 's/.*"pytorch_samples_per_s": ([0-9.]+).*/\1/')
  local ratio; ratio=$(awk -v a="$rfs" -v b="$pts" 'BEGIN{printf "%.3f", a/b}')
  results+=("$model $batch $dtype $rfs $pts $ratio")
}

for dtype in fp32 bf16 fp16; do
  run_case configs/dlrm_criteo_kaggle.ini 2048 "$dtype"
  run_case configs/dlrm_criteo_kaggle.ini 16384 "$dtype"
  run_case configs/dcnv2_criteo.ini 2048 "$dtype"
done

gpu=$(nvidia-smi --query-gpu=name --format=csv,noheader 2>/dev/null | head -n 1 || echo unknown)
commit=$(git rev-parse --short HEAD 2>/dev/null || echo unknown)
printf '\nGPU %s, commit %s, SGD, generated batches on the device\n' "$gpu" "$commit"
printf '%-6s %6s %5s %14s %14s %7s\n' model batch dtype recforge/s pytorch/s ratio
for r in "${results[@]}"; do
  read -r m b d a p q <<<"$r"
  printf '%-6s %6s %5s %14.0f %14.0f %7s\n' "$m" "$b" "$d" "$a" "$p" "$q"
done
for r in "${results[@]}"; do
  read -r m b d a p q <<<"$r"
  printf '{"bench": "gpu_throughput", "gpu": "%s", "commit": "%s", "model": "%s", "batch": %s, "dtype": "%s", "samples_per_s": %s, "pytorch_samples_per_s": %s, "ratio": %s}\n' \
    "$gpu" "$commit" "$m" "$b" "$d" "$a" "$p" "$q"
done
