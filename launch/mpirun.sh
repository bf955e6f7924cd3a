#!/usr/bin/env bash
# Launches a recforge program on NP ranks with Open MPI: ranks bound to their own cores, one GPU per
# local rank (CUDA_VISIBLE_DEVICES narrowed per rank), arguments passed through unchanged, and the
# flags Open MPI needs when run as root or with more ranks than cores.
#
#   launch/mpirun.sh [-n NP] [-H host1:slots,host2:slots | --hostfile FILE] [--] PROGRAM [ARGS...]
#   launch/mpirun.sh -n 4 build/recforge train --config configs/dlrm_criteo.ini
#   launch/mpirun.sh -n 16 --hostfile hosts.txt build/recforge train --config configs/dlrm_criteo.ini
#
# NP defaults to the number of GPUs on this node, or 1 without GPUs. Environment: EXTRA_MPIRUN_ARGS
# (added to mpirun's arguments), RANKS_PER_NODE (for core binding on multi-node jobs; default NP on
# one node). Under Slurm, use launch/slurm.sbatch (srun) instead; it uses the same per-rank wrapper.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)

# ---- per-rank mode: run by mpirun/srun on every rank ---------------------------------------------
if [[ "${1:-}" == "--rank-wrapper" ]]; then
  shift
  local_rank=${OMPI_COMM_WORLD_LOCAL_RANK:-${SLURM_LOCALID:-${MPI_LOCALRANKID:-0}}}
  export RECFORGE_LOCAL_RANK=$local_rank
  # One GPU per local rank: rank i sees only the i-th visible GPU, as device 0, so NCCL never finds
  # two ranks on one GPU and CUDA contexts are not created on every device.
  if [[ -z "${RECFORGE_NO_GPU_MAPPING:-}" ]] && command -v nvidia-smi >/dev/null 2>&1; then
    if [[ -n "${CUDA_VISIBLE_DEVICES:-}" ]]; then
      IFS=, read -r -a gpus <<<"$CUDA_VISIBLE_DEVICES"
    else
      mapfile -t gpus < <(nvidia-smi --query-gpu=index --format=csv,noheader 2>/dev/null || true)
    fi
    if (( ${#gpus[@]} > 0 )); then
      export CUDA_VISIBLE_DEVICES=${gpus[$(( local_rank % ${#gpus[@]} ))]// /}
    fi
  fi
  exec "$@"
fi

# ---- launcher mode --------------------------------------------------------------------------------
np=""
hosts_args=()
while (( $# > 0 )); do
  case "$1" in
    -n|-np) np=$2; shift 2 ;;
    -H|--host) hosts_args+=(-H "$2"); shift 2 ;;
    --hostfile) hosts_args+=(--hostfile "$2"); shift 2 ;;
    --) shift; break ;;
    -h|--help) sed -n '2,14p' "${BASH_SOURCE[0]}"; exit 0 ;;
    *) break ;;
  esac
done
if (( $# == 0 )); then
  echo "launch/mpirun.sh: no program given (see --help)" >&2
  exit 2
fi

gpus=0
if command -v nvidia-smi >/dev/null 2>&1; then
  gpus=$(nvidia-smi -L 2>/dev/null | grep -c '^GPU' || true)
fi
if [[ -z "$np" ]]; then np=$(( gpus > 0 ? gpus : 1 )); fi

args=(-np "$np" "${hosts_args[@]}")
if (( EUID == 0 )); then args+=(--allow-run-as-root); fi

# Cores per rank: each rank gets a block of cores for its OpenMP/BLAS threads, bound so that ranks do
# not migrate onto each other's cores. With more ranks than cores, oversubscribe without binding.
cores=$(nproc)
per_node=${RANKS_PER_NODE:-$np}
if (( ${#hosts_args[@]} == 0 && np > cores )); then
  args+=(--oversubscribe --bind-to none)
  threads=1
else
  threads=$(( cores / per_node ))
  (( threads < 1 )) && threads=1
  args+=(--map-by "slot:PE=$threads" --bind-to core)
fi
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-$threads}

# Environment every rank needs (Open MPI forwards only what -x names to remote hosts).
for v in OMP_NUM_THREADS PATH LD_LIBRARY_PATH CUDA_VISIBLE_DEVICES RECFORGE_NO_GPU_MAPPING RECFORGE_NCCL_TIMEOUT_S; do
  if [[ -n "${!v:-}" ]]; then args+=(-x "$v"); fi
done
while IFS='=' read -r name _; do args+=(-x "$name"); done < <(env | grep -E '^NCCL_' || true)

# shellcheck disable=SC2086
exec mpirun "${args[@]}" ${EXTRA_MPIRUN_ARGS:-} "$here/mpirun.sh" --rank-wrapper "$@"
