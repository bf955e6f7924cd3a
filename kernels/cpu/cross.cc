// CPU DCNv2 cross layer: the GEMMs are linear_forward/linear_backward (OpenBLAS, or oneDNN for bf16
// compute), the rest is elementwise in fp32. Forward y = x0 * h + x with h = W x + b (or U (V x) + b);
// backward dh = dy * x0, dx0 += dy * h, dx = dh W (+ through V) + dy.
#include "kernels/cpu/cpu_ops.h"

namespace rf::cpu {
namespace {

struct CrossShape {
  int64_t batch, dim, rank;
};

CrossShape check_inputs(const char* op, const Tensor& x0, const Tensor& x, const CrossWeights& wt) {
  const std::string o(op);
  check_dtype(x0, DType::kF32, (o + ": x0").c_str());
  check_dtype(x, DType::kF32, (o + ": x").c_str());
  if (x0.dim() != 2) throw ShapeError(o + ": x0: expected [batch, dim], got " + shape_str(x0.shape()));
  CrossShape s{x0.size(0), x0.size(1), 0};
  check_shape(x, {s.batch, s.dim}, (o + ": x").c_str());
  check_shape(wt.b, {s.dim}, (o + ": b").c_str());
  check_dtype(wt.b, DType::kF32, (o + ": b").c_str());
  if (wt.low_rank()) {
    if (wt.v.dim() != 2) throw ShapeError(o + ": v: expected [rank, dim], got " + shape_str(wt.v.shape()));
    s.rank = wt.v.size(0);
    check_shape(wt.v, {s.rank, s.dim}, (o + ": v").c_str());
    check_shape(wt.u, {s.dim, s.rank}, (o + ": u").c_str());
    check_dtype(wt.v, DType::kF32, (o + ": v").c_str());
    check_dtype(wt.u, DType::kF32, (o + ": u").c_str());
  } else {
    check_shape(wt.w, {s.dim, s.dim}, (o + ": w").c_str());
    check_dtype(wt.w, DType::kF32, (o + ": w").c_str());
  }
  return s;
}

// Allocates `t` as fp32 `shape` unless it already is one (lets callers reuse buffers across steps).
void ensure(Tensor& t, const Shape& shape) {
  if (!t.defined() || t.shape() != shape || t.dtype() != DType::kF32 || !t.device().is_cpu())
    t = Tensor::empty(shape, DType::kF32);
}

}  // namespace

void cross_forward(const Tensor& x0, const Tensor& x, const CrossWeights& weights, Tensor& y, CrossSaved& saved,
                   DType compute) {
  const CrossShape s = check_inputs("cross_forward", x0, x, weights);
  check_shape(y, {s.batch, s.dim}, "cross_forward: y");
  check_dtype(y, DType::kF32, "cross_forward: y");
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
  const CrossShape s = check_inputs("cross_backward", x0, x, weights);
  const Shape bd{s.batch, s.dim};
  check_shape(saved.h, bd, "cross_backward: saved.h");
  check_shape(dy, bd, "cross_backward: dy");
  check_dtype(dy, DType::kF32, "cross_backward: dy");
  check_shape(dx0, bd, "cross_backward: dx0");
  check_dtype(dx0, DType::kF32, "cross_backward: dx0");
  check_shape(dx, bd, "cross_backward: dx");
  check_dtype(dx, DType::kF32, "cross_backward: dx");
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
