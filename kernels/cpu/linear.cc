// CPU fully connected layer (nn.Linear layout, y = x w^T + b): every product goes to OpenBLAS
// cblas_sgemm. bf16 operands are widened to fp32 scratch first, because Debian's OpenBLAS exports no
// sbgemm: the GEMM then accumulates in fp32 (as the header promises) and only the output is rounded
// to bf16 (round to nearest even).
#include <cblas.h>

#include <algorithm>
#include <climits>
#include <vector>

#include "kernels/cpu/cpu_ops.h"
#include "kernels/cpu/cpu_util.h"

namespace rf::cpu {
namespace {

using detail::as_f32;

// Row-major C[M, N] = alpha op(A) op(B) + beta C, with the degenerate sizes BLAS rejects handled here
// (K == 0 makes C = beta C; a zero leading dimension is illegal even when nothing is read).
void sgemm(bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k, const float* a, int64_t lda,
           const float* b, int64_t ldb, float beta, float* c, int64_t ldc) {
  if (m == 0 || n == 0) return;
  if (k == 0) {
    for (int64_t i = 0; i < m; ++i)
      for (int64_t j = 0; j < n; ++j) c[i * ldc + j] = beta == 0.0f ? 0.0f : beta * c[i * ldc + j];
    return;
  }
  RF_CHECK(m < INT_MAX && n < INT_MAX && k < INT_MAX && lda < INT_MAX && ldb < INT_MAX && ldc < INT_MAX,
           "GEMM dimension exceeds the 32-bit BLAS interface: ", m, "x", n, "x", k);
  cblas_sgemm(CblasRowMajor, trans_a ? CblasTrans : CblasNoTrans, trans_b ? CblasTrans : CblasNoTrans,
              static_cast<int>(m), static_cast<int>(n), static_cast<int>(k), 1.0f, a,
              static_cast<int>(std::max<int64_t>(lda, 1)), b, static_cast<int>(std::max<int64_t>(ldb, 1)), beta, c,
              static_cast<int>(std::max<int64_t>(ldc, 1)));
}

void check_compute_dtype(const Tensor& t, const char* what) {
  if (t.dtype() != DType::kF32 && t.dtype() != DType::kBF16)
    throw ShapeError(std::string(what) + ": expected dtype fp32 or bf16, got " + dtype_name(t.dtype()));
}

void check_matrix(const Tensor& t, const char* what) {
  if (t.dim() != 2) throw ShapeError(std::string(what) + ": expected a 2-d tensor, got shape " + shape_str(t.shape()));
}

}  // namespace

void linear_forward(const Tensor& x, const Tensor& w, const Tensor* b, Tensor& y) {
  check_matrix(x, "linear_forward: x");
  check_matrix(w, "linear_forward: w");
  check_compute_dtype(x, "linear_forward: x");
  const int64_t batch = x.size(0), in = x.size(1), out = w.size(0);
  check_shape(w, {out, in}, "linear_forward: w");
  check_dtype(w, x.dtype(), "linear_forward: w");
  check_shape(y, {batch, out}, "linear_forward: y");
  check_dtype(y, x.dtype(), "linear_forward: y");
  if (b != nullptr) {
    check_shape(*b, {out}, "linear_forward: b");
    check_dtype(*b, DType::kF32, "linear_forward: b");
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

void linear_backward(const Tensor& x, const Tensor& w, const Tensor& dy, Tensor* dx, Tensor& dw, Tensor* db) {
  check_matrix(x, "linear_backward: x");
  check_matrix(w, "linear_backward: w");
  check_compute_dtype(x, "linear_backward: x");
  const int64_t batch = x.size(0), in = x.size(1), out = w.size(0);
  check_shape(w, {out, in}, "linear_backward: w");
  check_dtype(w, x.dtype(), "linear_backward: w");
  check_shape(dy, {batch, out}, "linear_backward: dy");
  check_dtype(dy, x.dtype(), "linear_backward: dy");
  check_shape(dw, {out, in}, "linear_backward: dw");
  check_dtype(dw, DType::kF32, "linear_backward: dw");
  if (dx != nullptr) {
    check_shape(*dx, {batch, in}, "linear_backward: dx");
    check_dtype(*dx, x.dtype(), "linear_backward: dx");
  }
  if (db != nullptr) {
    check_shape(*db, {out}, "linear_backward: db");
    check_dtype(*db, DType::kF32, "linear_backward: db");
  }

  std::vector<float> xs, ws, dys, dxs;
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

  if (db != nullptr) {
    // Column sums as dy^T ones: stays on OpenBLAS's threads (see the bias note above).
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
