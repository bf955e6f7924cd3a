#!/usr/bin/env bash
# Prepares the GPU checks for a lent GPU machine that has CUDA but no build tools or libraries of its
# own for recforge: builds the `gpu` preset (sm_90) here and stages its binaries, plus the shared
# libraries they load that a bare CUDA image lacks (Open MPI, HDF5, Boost, OpenBLAS, oneDNN and what
# they pull in; glibc and the CUDA libraries are the machine's own), into DIR (default .carry/gpu,
# which git ignores):
#   DIR/build.tar.xz (build/recforge, build/cuda_kernels_bench, build/tests/<suite>/<test>), DIR/lib.tar.xz
# Then run `bash scripts/gpu_run.sh DIR` there with DIR carried along (about 1.5 minutes for the
# tests and the kernel bench, 4 with --throughput).
#   scripts/gpu_bundle.sh [DIR] [BUILD_DIR]      (BUILD_DIR default build-gpu, configured if missing)
set -euo pipefail
cd "$(dirname "$0")/.."
out=${1:-.carry/gpu}
build=${2:-build-gpu}
if [[ ! -f "$build/CMakeCache.txt" ]]; then
  if [[ "$build" == build-gpu ]]; then cmake --preset gpu >/dev/null
  else cmake -S . -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=Release -DRECFORGE_CUDA=ON -DCMAKE_CUDA_ARCHITECTURES=90 >/dev/null; fi
fi
targets=(recforge cuda_kernels_bench test_core_cuda test_kernels_cuda test_gpu_train test_serve)
cmake --build "$build" --target "${targets[@]}"

rm -rf "$out/build" "$out/lib" "$out/lib.tar.xz"
mkdir -p "$out/build" "$out/lib"
bins=()
for t in "${targets[@]}"; do
  src=$(find "$build" -type f -name "$t" -perm -u+x -not -path "*/CMakeFiles/*" | head -n 1)
  [[ -n "$src" ]] || { echo "gpu_bundle.sh: no binary $t under $build" >&2; exit 1; }
  dst="$out/build/${src#"$build"/}"
  mkdir -p "$(dirname "$dst")"
  cp "$src" "$dst"
  bins+=("$dst")
done
# Every library the binaries load, except the C library's own and CUDA's (the machine has those).
skip='^(linux-vdso|ld-linux|libc|libm|libpthread|libdl|librt|libresolv|libutil|libcuda|libcudart|libcublas|libcublasLt|libnccl|libnvidia-ml)\.'
ldd "${bins[@]}" | awk '$2 == "=>" && $3 ~ /^\// {print $1, $3}' | sort -u | while read -r name path; do
  [[ "$name" =~ $skip ]] && continue
  cp -L "$path" "$out/lib/$name"
done
tar -C "$out" -cJf "$out/lib.tar.xz" lib
rm -rf "$out/lib"
# The binaries travel compressed too (their sm_90 code compresses 5:1): the device tool carries 64 MiB.
for b in "${bins[@]}"; do strip --strip-unneeded "$b"; done
tar -C "$out" -cJf "$out/build.tar.xz" build
rm -rf "$out/build"
du -sh "$out/build.tar.xz" "$out/lib.tar.xz"
echo "next, with the device tool: run 'bash scripts/gpu_run.sh $out' carrying $out"
