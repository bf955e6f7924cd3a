#!/usr/bin/env bash
# Installs exactly what recforge's build and tests need on a Debian 12 machine. Idempotent: packages
# already present are left alone, and apt is only asked when something is missing.
set -euo pipefail

pkgs=(
  build-essential cmake ninja-build pkg-config
  libopenblas-dev                 # CPU GEMMs (cblas_sgemm)
  libopenblas0-openmp             # ... its OpenMP build, which shares our OpenMP thread pool
  libdnnl-dev                     # oneDNN: bf16-compute GEMMs on the CPU (AVX512-BF16)
  libopenmpi-dev openmpi-bin      # MPI communicator and mpirun
  libhdf5-dev                     # checkpoints and exports
  libboost-program-options-dev    # the recforge command line
  libgtest-dev                    # unit tests
  python3-torch python3-numpy python3-h5py  # PyTorch parity tests (Debian's python3)
)

# Python packages from PyPI go into Debian's python3 only without upgrading numpy: Debian's torch 1.13
# and h5py are built for numpy 1.24 and break under numpy 2 ("numpy.dtype size changed"). onnxruntime
# works with numpy 1.24 when installed with --no-deps plus its pure-Python needs; the `onnx` Python
# package (through ml_dtypes) requires numpy 2, so recforge's tests do not use it.

missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done

if ((${#missing[@]})); then
  SUDO=""
  [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  export DEBIAN_FRONTEND=noninteractive
  $SUDO apt-get update -qq
  $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi

# onnxruntime (PyPI; Debian has no package) for the serving tests that score the ONNX export. Only
# onnxruntime itself: it accepts Debian's numpy, and pulling a newer numpy would break python3-torch.
if ! /usr/bin/python3 -c "import onnxruntime" 2>/dev/null; then
  SUDO=""
  [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  $SUDO /usr/bin/python3 -m pip install --quiet --break-system-packages onnxruntime
fi
echo "install-deps: all ${#pkgs[@]} packages present"
