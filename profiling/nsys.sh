#!/usr/bin/env bash
# Runs a recforge command under Nsight Systems with CUDA, NVTX and OS-runtime tracing, and turns the
# recforge NVTX ranges on (--profiling.nvtx=true is appended to `recforge train`-style commands).
#   profiling/nsys.sh [-o report_name] [-d delay_s] [-D duration_s] -- build/recforge train --config configs/dlrm_criteo.ini
# Under mpirun, wrap each rank: mpirun -np 8 profiling/nsys.sh -o prof_%q{OMPI_COMM_WORLD_RANK} -- build/recforge train ...
# Writes <report_name>.nsys-rep (open it in the Nsight Systems GUI, or `nsys stats <report>.nsys-rep`).
set -euo pipefail

out="recforge_$(date +%Y%m%d_%H%M%S)"
delay=""
duration=""
while [[ $# -gt 0 ]]; do
  case "$1" in
    -o) out="$2"; shift 2 ;;
    -d) delay="$2"; shift 2 ;;
    -D) duration="$2"; shift 2 ;;
    --) shift; break ;;
    -h|--help) sed -n '2,6p' "$0"; exit 0 ;;
    *) break ;;
  esac
done
if [[ $# -eq 0 ]]; then
  echo "usage: $0 [-o report] [-d delay_s] [-D duration_s] -- <recforge command...>" >&2
  exit 2
fi
if ! command -v nsys >/dev/null 2>&1; then
  for d in /usr/local/cuda/bin /opt/nvidia/nsight-systems/*/bin; do
    if [[ -x "$d/nsys" ]]; then PATH="$d:$PATH"; break; fi
  done
fi
command -v nsys >/dev/null 2>&1 || { echo "$0: nsys (Nsight Systems) not found on PATH" >&2; exit 2; }

cmd=("$@")
# recforge's own subcommands take --profiling.nvtx=true; other programs run as given.
if [[ "$(basename "${cmd[0]}")" == recforge && "${cmd[*]}" != *"--profiling.nvtx"* ]]; then
  cmd+=(--profiling.nvtx=true)
fi

args=(profile
  --trace=cuda,nvtx,osrt          # kernels/memcpys, recforge's phase ranges, host waits (data loader, locks)
  --cuda-memory-usage=true        # the caching allocator's footprint over time
  --cuda-graph-trace=node         # train.cuda_graph: each kernel of a replayed step, not one graph range
  --sample=none --cpuctxsw=none   # CPU sampling adds overhead and noise to step times
  --force-overwrite=true
  --output="$out")
[[ -n "$delay" ]] && args+=(--delay="$delay")
[[ -n "$duration" ]] && args+=(--duration="$duration")
echo "+ nsys ${args[*]} ${cmd[*]}" >&2
exec nsys "${args[@]}" "${cmd[@]}"
