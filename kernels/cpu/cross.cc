// CPU DCNv2 cross layer: the GEMMs are linear_forward/linear_backward (OpenBLAS, or oneDNN for bf16
// compute), the rest is elementwise in fp32. Forward y = x0 * h + x with h = W x + b (or U (V x) + b);
// backward dh = dy * x0, dx0 += dy * h, dx = dh W (+ through V) + dy.
#include "kernels/cpu/cpu_ops.h"
#include "kernels/validate.h"

namespace rf::cpu {
namespace {

// Allocates `t` as fp32 `shape` unless it already is one (lets callers reuse buffers across steps).
void ensure(Tensor& t, const Shape& shape) {
  if (!t.defined() || t.shape() != shape || t.dtype() != DType::kF32 || !t.device().is_cpu())
    t = Tensor::empty(shape, DType::kF32);
}

}  // namespace

void cross_forward(const Tensor& x0, const Tensor& x, const CrossWeights& weights, Tensor& y, CrossSaved& saved,
                   DType compute) {
  const checks::CrossDims s = checks::cross_forward(x0, x, weights, y);
  ensure(saved.h, {s.batch, s.dim});
  if (weights.low_rank()) {
    ensure(saved.vx, {s.batch, s.rank});
    cpu::linear_forward(x, weights.v, nullptr, saved.vx, compute);
    cpu::linear_forward(saved.vx, weights.u, &weights.b, saved.h, compute);
  } else {
    saved.vx = Tensor();
    cpu::linear_forward(x, weights.w, &weights.b, saved.h, compute);
  }
  const float* x0p = x0.data<float>();
  const float* xp = x.data<float>();
  const float* hp = saved.h.data<float>();
  float* yp = y.data<float>();
  const int64_t n = y.numel();
#pragma omp parallel for simd schedule(static)
  for (int64_t i = 0; i < n; ++i) yp[i] = x0p[i] * hp[i] + xp[i];
}

void cross_backward(const Tensor& x0, const Tensor& x, const CrossWeights& weights, const CrossSaved& saved,
                    const Tensor& dy, Tensor& dx0, Tensor& dx, CrossGrads& grads, DType compute) {
  const checks::CrossDims s = checks::cross_backward(x0, x, weights, saved, dy, dx0, dx);
  const Shape bd{s.batch, s.dim};
  ensure(grads.b, {s.dim});

  Tensor dh = Tensor::empty(bd, DType::kF32);
  {
    const float* x0p = x0.data<float>();
    const float* hp = saved.h.data<float>();
    const float* dyp = dy.data<float>();
    float* dhp = dh.data<float>();
    float* dx0p = dx0.data<float>();
    const int64_t n = dh.numel();
#pragma omp parallel for simd schedule(static)
    for (int64_t i = 0; i < n; ++i) {
      dhp[i] = dyp[i] * x0p[i];
      dx0p[i] += dyp[i] * hp[i];
    }
  }

  if (weights.low_rank()) {
    check_shape(saved.vx, {s.batch, s.rank}, "cross_backward: saved.vx");
    ensure(grads.u, {s.dim, s.rank});
    ensure(grads.v, {s.rank, s.dim});
    grads.w = Tensor();
    Tensor dvx = Tensor::empty({s.batch, s.rank}, DType::kF32);
    cpu::linear_backward(saved.vx, weights.u, dh, &dvx, grads.u, &grads.b, compute);
    cpu::linear_backward(x, weights.v, dvx, &dx, grads.v, nullptr, compute);
  } else {
    ensure(grads.w, {s.dim, s.dim});
    grads.v = Tensor();
    grads.u = Tensor();
    cpu::linear_backward(x, weights.w, dh, &dx, grads.w, &grads.b, compute);
  }

  // The residual path y = ... + x.
  const float* dyp = dy.data<float>();
  float* dxp = dx.data<float>();
  const int64_t n = dx.numel();
#pragma omp parallel for simd schedule(static)
  for (int64_t i = 0; i < n; ++i) dxp[i] += dyp[i];
}

}  // namespace rf::cpu
