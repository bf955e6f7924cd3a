// CPU fully connected layer (nn.Linear layout, y = x w^T + b). fp32 compute goes to OpenBLAS
// cblas_sgemm; bf16 tensors are widened to fp32 scratch for it, because Debian's OpenBLAS exports no
// sbgemm, and only the output is rounded to bf16 (round to nearest even). bf16 compute goes to
// oneDNN's bf16 GEMM (AVX512-BF16 vdpbf16ps where the CPU has it, fp32 accumulation either way).
#include <cblas.h>
#include <dnnl.h>

#include <algorithm>
#include <climits>
#include <vector>

#include "kernels/cpu/cpu_ops.h"
#include "kernels/cpu/cpu_util.h"
#include "kernels/validate.h"

// oneDNN exports its bf16 GEMM but 2.6's public headers do not declare it (its own tests declare it
// this way). Row-major like dnnl_sgemm: C[M, N] = alpha op(A) op(B) + beta C, fp32 accumulation.
// oneDNN's bfloat16_t is, like rf::bf16, one uint16_t holding the top half of an fp32.
extern "C" dnnl_status_t dnnl_gemm_bf16bf16f32(char transa, char transb, dnnl_dim_t M, dnnl_dim_t N, dnnl_dim_t K,
                                               float alpha, const rf::bf16* A, dnnl_dim_t lda, const rf::bf16* B,
                                               dnnl_dim_t ldb, float beta, float* C, dnnl_dim_t ldc);
static_assert(sizeof(rf::bf16) == 2, "rf::bf16 must match oneDNN's bfloat16_t");

namespace rf::cpu {
namespace {

using detail::as_f32;

// C = beta C, the GEMM with K == 0 (which BLAS rejects).
void scale_c(int64_t m, int64_t n, float beta, float* c, int64_t ldc) {
  for (int64_t i = 0; i < m; ++i)
    for (int64_t j = 0; j < n; ++j) c[i * ldc + j] = beta == 0.0f ? 0.0f : beta * c[i * ldc + j];
}

// Row-major C[M, N] = op(A) op(B) + beta C, with the degenerate sizes BLAS rejects handled here
// (K == 0 makes C = beta C; a zero leading dimension is illegal even when nothing is read).
void sgemm(bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k, const float* a, int64_t lda,
           const float* b, int64_t ldb, float beta, float* c, int64_t ldc) {
  if (m == 0 || n == 0) return;
  if (k == 0) return scale_c(m, n, beta, c, ldc);
  RF_CHECK(m < INT_MAX && n < INT_MAX && k < INT_MAX && lda < INT_MAX && ldb < INT_MAX && ldc < INT_MAX,
           "GEMM dimension exceeds the 32-bit BLAS interface: ", m, "x", n, "x", k);
  cblas_sgemm(CblasRowMajor, trans_a ? CblasTrans : CblasNoTrans, trans_b ? CblasTrans : CblasNoTrans,
              static_cast<int>(m), static_cast<int>(n), static_cast<int>(k), 1.0f, a,
              static_cast<int>(std::max<int64_t>(lda, 1)), b, static_cast<int>(std::max<int64_t>(ldb, 1)), beta, c,
              static_cast<int>(std::max<int64_t>(ldc, 1)));
}

// sgemm with bf16 A and B (fp32 C, fp32 accumulation) through oneDNN.
void gemm_bf16(bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k, const bf16* a, int64_t lda,
               const bf16* b, int64_t ldb, float beta, float* c, int64_t ldc) {
  if (m == 0 || n == 0) return;
  if (k == 0) return scale_c(m, n, beta, c, ldc);
  // oneDNN's GEMM narrows its sizes to int internally.
  RF_CHECK(m < INT_MAX && n < INT_MAX && k < INT_MAX && lda < INT_MAX && ldb < INT_MAX && ldc < INT_MAX,
           "bf16 GEMM dimension exceeds oneDNN's 32-bit GEMM: ", m, "x", n, "x", k);
  const dnnl_status_t st =
      dnnl_gemm_bf16bf16f32(trans_a ? 'T' : 'N', trans_b ? 'T' : 'N', m, n, k, 1.0f, a, std::max<int64_t>(lda, 1), b,
                            std::max<int64_t>(ldb, 1), beta, c, std::max<int64_t>(ldc, 1));
  if (st != dnnl_success)
    throw BackendError("dnnl_gemm_bf16bf16f32 failed with status " + std::to_string(static_cast<int>(st)) + " on " +
                       std::to_string(m) + "x" + std::to_string(n) + "x" + std::to_string(k));
}

// Per-thread operand staging for bf16 compute. It only grows, so that after the first step of a run
// (every layer's shapes seen once) the hot path allocates nothing.
struct Bf16Scratch {
  std::vector<bf16> a, b;
  std::vector<float> c;
};
Bf16Scratch& bf16_scratch() {
  thread_local Bf16Scratch s;
  return s;
}

template <class T>
T* grow(std::vector<T>& v, int64_t n) {
  if (v.size() < static_cast<size_t>(n)) v.resize(static_cast<size_t>(n));
  return v.data();
}

// A tensor's elements as bf16: its own buffer when it is bf16, else rounded to nearest even into
// `scratch`. The rounding is memory-bound; small operands (a bias-sized weight) skip the fork.
const bf16* as_bf16(const Tensor& t, std::vector<bf16>& scratch) {
  if (t.dtype() == DType::kBF16) return t.data<bf16>();
  const int64_t n = t.numel();
  const float* src = t.data<float>();
  bf16* dst = grow(scratch, n);
#pragma omp parallel for simd schedule(static) if (n >= 32768)
  for (int64_t i = 0; i < n; ++i) dst[i] = to_bf16(src[i]);
  return dst;
}

}  // namespace

void linear_forward(const Tensor& x, const Tensor& w, const Tensor* b, Tensor& y, DType compute) {
  const checks::LinearDims dims = checks::linear_forward(x, w, b, y, compute, checks::Backend::kCpu);
  const int64_t batch = dims.batch, in = dims.in, out = dims.out;

  if (compute == DType::kBF16) {
    Bf16Scratch& s = bf16_scratch();
    const bf16* xp = as_bf16(x, s.a);
    const bf16* wp = as_bf16(w, s.b);
    float* yp = y.dtype() == DType::kF32 ? y.data<float>() : grow(s.c, y.numel());
    // The fp32 bias enters as C with beta = 1, serially, as in the fp32 path below.
    if (b != nullptr) {
      const float* bp = b->data<float>();
      for (int64_t i = 0; i < batch; ++i) std::copy(bp, bp + out, yp + i * out);
    }
    gemm_bf16(false, true, batch, out, in, xp, in, wp, in, b != nullptr ? 1.0f : 0.0f, yp, out);
    if (y.dtype() == DType::kBF16) detail::narrow(yp, y.data<bf16>(), y.numel());
    return;
  }

  std::vector<float> xs, ws, ys;
  const float* xp = as_f32(x, xs);
  const float* wp = as_f32(w, ws);
  float* yp = nullptr;
  if (y.dtype() == DType::kF32) {
    yp = y.data<float>();
  } else {
    ys.resize(static_cast<size_t>(y.numel()));
    yp = ys.data();
  }
  // The bias goes in as the GEMM's C operand (beta = 1), saving a second pass over y. The copy is
  // serial on purpose: with the pthread build of OpenBLAS, an OpenMP region right before the GEMM
  // leaves libgomp's workers spinning while OpenBLAS's own pthreads start, and the two pools fight
  // for the cores (measured: 11 ms lost per call with 2 threads on 2 cores).
  if (b != nullptr) {
    const float* bp = b->data<float>();
    for (int64_t i = 0; i < batch; ++i) std::copy(bp, bp + out, yp + i * out);
  }
  sgemm(false, true, batch, out, in, xp, in, wp, in, b != nullptr ? 1.0f : 0.0f, yp, out);
  if (y.dtype() == DType::kBF16) detail::narrow(yp, y.data<bf16>(), y.numel());
}

void linear_backward(const Tensor& x, const Tensor& w, const Tensor& dy, Tensor* dx, Tensor& dw, Tensor* db,
                     DType compute) {
  const checks::LinearDims dims = checks::linear_backward(x, w, dy, dx, dw, db, compute, checks::Backend::kCpu);
  const int64_t batch = dims.batch, in = dims.in, out = dims.out;

  std::vector<float> xs, ws, dys, dxs;
  if (compute == DType::kBF16) {
    Bf16Scratch& s = bf16_scratch();
    const bf16* dy16 = as_bf16(dy, s.a);
    // dw [out, in] = dy^T [out, batch] x [batch, in]
    gemm_bf16(true, false, out, in, batch, dy16, out, as_bf16(x, s.b), in, 0.0f, dw.data<float>(), in);
    if (dx != nullptr) {
      // s.b is free again: x's bf16 copy has been consumed.
      float* dxp = dx->dtype() == DType::kF32 ? dx->data<float>() : grow(s.c, dx->numel());
      // dx [batch, in] = dy [batch, out] w [out, in]
      gemm_bf16(false, false, batch, in, out, dy16, out, as_bf16(w, s.b), in, 0.0f, dxp, in);
      if (dx->dtype() == DType::kBF16) detail::narrow(dxp, dx->data<bf16>(), dx->numel());
    }
    // db sums the unrounded dy in fp32, below.
  } else {
    const float* dyp = as_f32(dy, dys);
    const float* xp = as_f32(x, xs);

    // dw [out, in] = dy^T [out, batch] x [batch, in]
    sgemm(true, false, out, in, batch, dyp, out, xp, in, 0.0f, dw.data<float>(), in);

    if (dx != nullptr) {
      const float* wp = as_f32(w, ws);
      float* dxp = nullptr;
      if (dx->dtype() == DType::kF32) {
        dxp = dx->data<float>();
      } else {
        dxs.resize(static_cast<size_t>(dx->numel()));
        dxp = dxs.data();
      }
      // dx [batch, in] = dy [batch, out] w [out, in]
      sgemm(false, false, batch, in, out, dyp, out, wp, in, 0.0f, dxp, in);
      if (dx->dtype() == DType::kBF16) detail::narrow(dxp, dx->data<bf16>(), dx->numel());
    }
  }

  if (db != nullptr) {
    // Column sums as dy^T ones: stays on OpenBLAS's threads (see the bias note above).
    const float* dyp = as_f32(dy, dys);  // no copy when dy is fp32; one widening when it is bf16
    float* dbp = db->data<float>();
    if (batch == 0) {
      std::fill(dbp, dbp + out, 0.0f);
    } else if (out > 0) {
      RF_CHECK(batch < INT_MAX && out < INT_MAX, "linear_backward: db dimension exceeds the 32-bit BLAS interface");
      const std::vector<float> ones(static_cast<size_t>(batch), 1.0f);
      cblas_sgemv(CblasRowMajor, CblasTrans, static_cast<int>(batch), static_cast<int>(out), 1.0f, dyp,
                  static_cast<int>(out), ones.data(), 1, 0.0f, dbp, 1);
    }
  }
}

}  // namespace rf::cpu
