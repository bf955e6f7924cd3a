// CUDA DCNv2 cross layer: the GEMMs are cuda::linear_forward/linear_backward (cuBLASLt, bias in the
// epilogue), the elementwise parts are one fused kernel each way. Forward y = x0 * h + x with
// h = W x + b (or U (V x) + b); backward dh = dy * x0 and dx0 += dy * h in one pass, then the GEMMs,
// then dx += dy.
#include <cuda_runtime.h>

#include "kernels/cuda/cuda_common.cuh"
#include "kernels/cuda/cuda_ops.h"
#include "kernels/validate.h"

namespace rf::cuda {
namespace {

// Allocates `t` as fp32 `shape` on `device` unless it already is one (buffers are reused across steps).
void ensure(Tensor& t, const Shape& shape, Device device) {
  if (!t.defined() || t.shape() != shape || t.dtype() != DType::kF32 || !(t.device() == device))
    t = Tensor::empty(shape, DType::kF32, device);
}

__global__ void cross_out_kernel(const float* __restrict__ x0, const float* __restrict__ h,
                                 const float* __restrict__ x, float* __restrict__ y, int64_t n) {
  const int64_t stride = static_cast<int64_t>(gridDim.x) * blockDim.x;
  for (int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < n; i += stride)
    y[i] = x0[i] * h[i] + x[i];
}

__global__ void cross_grad_kernel(const float* __restrict__ dy, const float* __restrict__ x0,
                                  const float* __restrict__ h, float* __restrict__ dh, float* __restrict__ dx0,
                                  int64_t n) {
  const int64_t stride = static_cast<int64_t>(gridDim.x) * blockDim.x;
  for (int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < n; i += stride) {
    const float g = dy[i];
    dh[i] = g * x0[i];
    dx0[i] += g * h[i];
  }
}

__global__ void add_kernel(float* __restrict__ a, const float* __restrict__ b, int64_t n) {
  const int64_t stride = static_cast<int64_t>(gridDim.x) * blockDim.x;
  for (int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < n; i += stride) a[i] += b[i];
}

}  // namespace

void cross_forward(const Tensor& x0, const Tensor& x, const CrossWeights& weights, Tensor& y, CrossSaved& saved,
                   DType compute) {
  const checks::CrossDims s = checks::cross_forward(x0, x, weights, y);
  const Device dev = x0.device();
  detail::DeviceScope scope(x0);
  ensure(saved.h, {s.batch, s.dim}, dev);
  if (weights.low_rank()) {
    ensure(saved.vx, {s.batch, s.rank}, dev);
    cuda::linear_forward(x, weights.v, nullptr, saved.vx, compute);
    cuda::linear_forward(saved.vx, weights.u, &weights.b, saved.h, compute);
  } else {
    saved.vx = Tensor();
    cuda::linear_forward(x, weights.w, &weights.b, saved.h, compute);
  }
  const int64_t n = y.numel();
  if (n == 0) return;
  cross_out_kernel<<<detail::grid_for(n, 256), 256, 0, detail::stream()>>>(x0.data<float>(), saved.h.data<float>(),
                                                                           x.data<float>(), y.data<float>(), n);
  detail::check_launch();
}

void cross_backward(const Tensor& x0, const Tensor& x, const CrossWeights& weights, const CrossSaved& saved,
                    const Tensor& dy, Tensor& dx0, Tensor& dx, CrossGrads& grads, DType compute) {
  const checks::CrossDims s = checks::cross_backward(x0, x, weights, saved, dy, dx0, dx);
  const Shape bd{s.batch, s.dim};
  const Device dev = x0.device();
  detail::DeviceScope scope(x0);
  ensure(grads.b, {s.dim}, dev);

  Tensor dh = Tensor::empty(bd, DType::kF32, dev);
  const int64_t n = dh.numel();
  if (n > 0) {
    cross_grad_kernel<<<detail::grid_for(n, 256), 256, 0, detail::stream()>>>(
        dy.data<float>(), x0.data<float>(), saved.h.data<float>(), dh.data<float>(), dx0.data<float>(), n);
    detail::check_launch();
  }
  if (weights.low_rank()) {
    check_shape(saved.vx, {s.batch, s.rank}, "cross_backward: saved.vx");
    ensure(grads.u, {s.dim, s.rank}, dev);
    ensure(grads.v, {s.rank, s.dim}, dev);
    grads.w = Tensor();
    Tensor dvx = Tensor::empty({s.batch, s.rank}, DType::kF32, dev);
    cuda::linear_backward(saved.vx, weights.u, dh, &dvx, grads.u, &grads.b, compute);
    cuda::linear_backward(x, weights.v, dvx, &dx, grads.v, nullptr, compute);
  } else {
    ensure(grads.w, {s.dim, s.dim}, dev);
    grads.v = Tensor();
    grads.u = Tensor();
    cuda::linear_backward(x, weights.w, dh, &dx, grads.w, &grads.b, compute);
  }
  if (n > 0) {
    add_kernel<<<detail::grid_for(n, 256), 256, 0, detail::stream()>>>(dx.data<float>(), dy.data<float>(), n);
    detail::check_launch();
  }
}

}  // namespace rf::cuda
