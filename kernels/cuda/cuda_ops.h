// CUDA implementations of the ops in kernels/<op>.h (namespace rf::cuda), for tensors on a CUDA
// device. Only built when RECFORGE_WITH_CUDA; kernels/dispatch.cc routes to these and throws
// BackendError for an op that has no CUDA version yet.
#pragma once

#include "kernels/cast.h"
#include "src/core/tensor.h"

namespace rf::cuda {

// Elementwise fp32/fp16/bf16 conversion on the tensors' device, bit-identical to the CPU cast
// (round to nearest even as src/core/dtype.h). Runs on the legacy default stream.
void cast(const Tensor& src, Tensor& dst);

}  // namespace rf::cuda
