#!/usr/bin/env bash
# Builds the libFuzzer targets with clang (ASan + UBSan) in build-fuzz and runs each for N seconds
# (default 60) from a seed corpus of valid inputs (fuzz/make_seeds.cc: Criteo TSV rows and a shard).
# Usage: scripts/fuzz.sh [seconds] [target...]; crash inputs land in build-fuzz/fuzz/.
# Needs: clang and libclang-rt-14-dev (Debian: apt-get install -y clang libclang-rt-14-dev).
set -euo pipefail
cd "$(dirname "$0")/.."
secs=${1:-60}
shift || true
targets=("$@")
[ ${#targets[@]} -eq 0 ] && targets=(fuzz_tsv fuzz_shard)

cmake -S . -B build-fuzz -G Ninja -DCMAKE_C_COMPILER=clang -DCMAKE_CXX_COMPILER=clang++ -DRECFORGE_CUDA=OFF \
  -DRECFORGE_FUZZ=ON -DRECFORGE_TESTS=OFF -DRECFORGE_BENCH=OFF -DRECFORGE_NATIVE=OFF -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
cmake --build build-fuzz -j "$(nproc)" --target "${targets[@]}" fuzz_make_seeds

seeds=build-fuzz/fuzz/seeds
rm -rf "$seeds" && mkdir -p "$seeds"
./build-fuzz/fuzz/fuzz_make_seeds "$seeds"

for t in "${targets[@]}"; do
  corpus="build-fuzz/fuzz/corpus_$t"
  mkdir -p "$corpus"
  case $t in fuzz_tsv) cp "$seeds"/*.tsv "$corpus"/ ;; fuzz_shard) cp "$seeds"/*.rfshard "$corpus"/ ;; esac
  echo "== $t for ${secs}s"
  (cd build-fuzz/fuzz && "./$t" -max_total_time="$secs" -max_len=65536 -print_final_stats=1 "corpus_$t")
done
