// Fully connected layer in PyTorch's nn.Linear layout: y = x w^T + b. GEMMs go to the BLAS library on
// the CPU (cblas_sgemm for fp32 compute, oneDNN's bf16 GEMM for bf16 compute; fp32 accumulation in
// both) and to cuBLASLt on CUDA.
#pragma once

#include "src/core/tensor.h"

namespace rf {

// x [batch, in], w [out, in], b [out] or nullptr, y [batch, out]. x, w, y share one dtype (fp32 or
// bf16; accumulation is fp32 in both); b is fp32.
void linear_forward(const Tensor& x, const Tensor& w, const Tensor* b, Tensor& y);

// dy [batch, out]. Writes (overwrites) dx [batch, in] = dy w when dx is not null, dw [out, in] = dy^T x,
// db [out] = column sums of dy when db is not null. dw and db are fp32.
void linear_backward(const Tensor& x, const Tensor& w, const Tensor& dy, Tensor* dx, Tensor& dw, Tensor* db);

// Mixed precision as autocast does it: the tensors keep their dtypes (fp32 master weights and
// activations), and `compute` names the type the GEMM operands are rounded to. kF32 is the overloads
// above. kBF16 rounds x, w (and dy) to bf16 (nearest even) and multiplies them with fp32 accumulation
// into fp32 results; the bias and db stay fp32 throughout. kF16 has no CPU implementation (BackendError).
void linear_forward(const Tensor& x, const Tensor& w, const Tensor* b, Tensor& y, DType compute);
void linear_backward(const Tensor& x, const Tensor& w, const Tensor& dy, Tensor* dx, Tensor& dw, Tensor* db,
                     DType compute);

}  // namespace rf
