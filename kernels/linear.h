// Fully connected layer in PyTorch's nn.Linear layout: y = x w^T + b. GEMMs go to the BLAS library on
// the CPU (cblas_sgemm for fp32; bf16 operands with fp32 accumulation) and to cuBLASLt on CUDA.
#pragma once

#include "src/core/tensor.h"

namespace rf {

// x [batch, in], w [out, in], b [out] or nullptr, y [batch, out]. x, w, y share one dtype (fp32 or
// bf16; accumulation is fp32 in both); b is fp32.
void linear_forward(const Tensor& x, const Tensor& w, const Tensor* b, Tensor& y);

// dy [batch, out]. Writes (overwrites) dx [batch, in] = dy w when dx is not null, dw [out, in] = dy^T x,
// db [out] = column sums of dy when db is not null. dw and db are fp32.
void linear_backward(const Tensor& x, const Tensor& w, const Tensor& dy, Tensor* dx, Tensor& dw, Tensor* db);

}  // namespace rf
