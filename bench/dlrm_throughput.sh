#!/usr/bin/env bash
# DLRM (Criteo Kaggle shape) CPU training throughput: recforge against PyTorch eager with the same
# shapes, batch, threads and optimizer, measured in the same run. Prints a table and a JSON line with
# samples_per_s, pytorch_samples_per_s and ratio.
#   bench/dlrm_throughput.sh [config] [threads]     (defaults: configs/dlrm_criteo_kaggle.ini, 2)
set -euo pipefail
cd "$(dirname "$0")/.."
config=${1:-configs/dlrm_criteo_kaggle.ini}
threads=${2:-2}
build=${BUILD_DIR:-build}
[ -x "$build/recforge" ] || { cmake --preset default >/dev/null && cmake --build "$build" --target recforge; }

# Read the shapes from the effective config so both sides train the same model.
eff=$("$build/recforge" bench --config "$config" --train.threads="$threads" --print-config)
get() { printf '%s\n' "$eff" | awk -v s="[$1]" -v k="$2" '$0==s{f=1;next} /^\[/{f=0} f&&$1==k{print $3}'; }
model=$(get model type); dim=$(get model embedding_dim); bottom=$(get model bottom_mlp); top=$(get model top_mlp)
batch=$(get train batch_size); rows=$(get bench rows_per_table); tables=$(get bench tables)
layers=$(get model cross_layers); rank=$(get model cross_rank); lr=$(get optimizer lr)

echo "== recforge ($model, batch $batch, $threads threads)"
rf_out=$("$build/recforge" bench dlrm --config "$config" --train.threads="$threads" --optimizer.dense=sgd --optimizer.sparse=sgd)
printf '%s\n' "$rf_out"
rf=$(printf '%s\n' "$rf_out" | tail -n 1 | sed -E 's/.*"samples_per_s": ([0-9.]+).*/\1/')

echo "== PyTorch $(/usr/bin/python3 -c 'import torch; print(torch.__version__)') eager (same shapes)"
pt_out=$(/usr/bin/python3 bench/pytorch_dlrm.py --model "$model" --rows "$rows" --tables "$tables" --dim "$dim" \
  --bottom "$bottom" --top "$top" --cross-layers "$layers" --cross-rank "$rank" --batch "$batch" \
  --threads "$threads" --lr "$lr")
printf '%s\n' "$pt_out"
pt=$(printf '%s\n' "$pt_out" | tail -n 1 | sed -E 's/.*"pytorch_samples_per_s": ([0-9.]+).*/\1/')

ratio=$(awk -v a="$rf" -v b="$pt" 'BEGIN{printf "%.3f", a/b}')
printf '\n%-28s %14s\n' "trainer" "samples/s"
printf '%-28s %14.0f\n' "recforge" "$rf" "pytorch eager" "$pt"
printf '%-28s %14s\n' "ratio (recforge / pytorch)" "$ratio"
printf '{"bench": "dlrm_throughput", "model": "%s", "batch": %s, "threads": %s, "samples_per_s": %s, "pytorch_samples_per_s": %s, "ratio": %s}\n' \
  "$model" "$batch" "$threads" "$rf" "$pt" "$ratio"
