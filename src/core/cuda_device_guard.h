// Makes a CUDA device current for a scope and restores the previous one, for code that serves several
// devices (the caching allocator, the NCCL communicator). Include only where CUDA is built.
#pragma once

#include <cuda_runtime.h>

#include "src/core/error.h"

namespace rf {

struct CudaDeviceGuard {
  int previous = 0;
  explicit CudaDeviceGuard(int device) {
    RF_CHECK_CUDA(cudaGetDevice(&previous));
    if (previous != device) RF_CHECK_CUDA(cudaSetDevice(device));
  }
  ~CudaDeviceGuard() { cudaSetDevice(previous); }
  CudaDeviceGuard(const CudaDeviceGuard&) = delete;
  CudaDeviceGuard& operator=(const CudaDeviceGuard&) = delete;
};

}  // namespace rf
