// The one cuBLASLt entry point of recforge (kernels/cuda/cublaslt_gemm.cc): a row-major GEMM with
// optional bias and ReLU fused into cuBLASLt's epilogue. Kept in its own translation unit so that
// changes to the elementwise kernels do not recompile it (and the other way round).
#pragma once

#include <cstdint>

#include "src/core/dtype.h"

namespace rf::cuda {

// Row-major D[m, n] = op(A) op(B) (+ bias[n] broadcast over rows) (ReLU), op = transpose when trans_*.
// A is [m, k] (or [k, m] when trans_a) with leading dimension lda, B is [k, n] (or [n, k]) with ldb.
// A and B share `ab_type` (fp32, bf16, fp16); D is `d_type` (ab_type or fp32); accumulation is fp32
// (TF32 tensor cores for fp32 operands when `tf32`). `bias` has `bias_type` == d_type (cuBLASLt's
// rule outside fp8) or is null. beta == 0 overwrites D; beta == 1 adds to it (C = D in place).
struct GemmArgs {
  bool trans_a = false, trans_b = false;
  int64_t m = 0, n = 0, k = 0;
  const void* a = nullptr;
  int64_t lda = 0;
  const void* b = nullptr;
  int64_t ldb = 0;
  void* d = nullptr;
  int64_t ldd = 0;
  DType ab_type = DType::kF32;
  DType d_type = DType::kF32;
  float beta = 0.0f;
  const void* bias = nullptr;
  bool relu = false;
  bool tf32 = false;
  int device = 0;
};

// Returns false when cuBLASLt has no algorithm for the fused epilogue (bias/ReLU) on this shape and
// alignment; the caller then runs the plain GEMM and its own bias/ReLU kernel. Throws BackendError
// when even the plain GEMM is unsupported or fails.
bool gemm(const GemmArgs& args);

// Drops the cached heuristics and frees the per-device workspaces and handles (tests, shutdown).
void gemm_release();

}  // namespace rf::cuda
