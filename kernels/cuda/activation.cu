// CUDA elementwise activations (ReLU, sigmoid) for fp32, bf16 and fp16, math in fp32. Each thread reads
// its element before writing it, so in-place calls are safe. Grid-stride loops; memory-bound.
#include <cuda_runtime.h>

#include "kernels/cuda/cuda_common.cuh"
#include "kernels/cuda/cuda_ops.h"

namespace rf::cuda {
namespace {

using detail::load_f32;
using detail::store_as;

struct Relu {
  __device__ float operator()(float v) const { return v > 0.0f ? v : 0.0f; }
};
struct ReluGrad {
  __device__ float operator()(float y, float dy) const { return y > 0.0f ? dy : 0.0f; }
};
// Stable logistic: exp of a non-positive argument only, as the CPU version.
struct Sigmoid {
  __device__ float operator()(float v) const {
    if (v >= 0.0f) return 1.0f / (1.0f + expf(-v));
    const float e = expf(v);
    return e / (1.0f + e);
  }
};
struct SigmoidGrad {
  __device__ float operator()(float y, float dy) const { return dy * y * (1.0f - y); }
};

template <class T, class F>
__global__ void map1_kernel(const T* a, T* out, int64_t n, F f) {
  const int64_t stride = static_cast<int64_t>(gridDim.x) * blockDim.x;
  for (int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < n; i += stride)
    out[i] = store_as<T>(f(load_f32(a[i])));
}

template <class T, class F>
__global__ void map2_kernel(const T* a, const T* b, T* out, int64_t n, F f) {
  const int64_t stride = static_cast<int64_t>(gridDim.x) * blockDim.x;
  for (int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < n; i += stride)
    out[i] = store_as<T>(f(load_f32(a[i]), load_f32(b[i])));
}

void check_same(const Tensor& ref, const Tensor& t, const char* what) {
  check_shape(t, ref.shape(), what);
  check_dtype(t, ref.dtype(), what);
}

void check_float(const Tensor& t, const char* what) {
  if (!is_floating(t.dtype()))
    throw ShapeError(std::string(what) + ": expected dtype fp32, bf16 or fp16, got " + dtype_name(t.dtype()));
}

template <class F>
void launch1(const Tensor& a, Tensor& out, F f) {
  const int64_t n = a.numel();
  if (n == 0) return;
  detail::DeviceScope scope(a);
  const unsigned grid = detail::grid_for(n, 256);
  switch (a.dtype()) {
    case DType::kF32:
      map1_kernel<<<grid, 256, 0, detail::stream()>>>(a.data<float>(), out.data<float>(), n, f);
      break;
    case DType::kBF16:
      map1_kernel<<<grid, 256, 0, detail::stream()>>>(a.data<bf16>(), out.data<bf16>(), n, f);
      break;
    default:
      map1_kernel<<<grid, 256, 0, detail::stream()>>>(a.data<f16>(), out.data<f16>(), n, f);
      break;
  }
  detail::check_launch();
}

template <class F>
void launch2(const Tensor& a, const Tensor& b, Tensor& out, F f) {
  const int64_t n = a.numel();
  if (n == 0) return;
  detail::DeviceScope scope(a);
  const unsigned grid = detail::grid_for(n, 256);
  switch (a.dtype()) {
    case DType::kF32:
      map2_kernel<<<grid, 256, 0, detail::stream()>>>(a.data<float>(), b.data<float>(), out.data<float>(), n, f);
      break;
    case DType::kBF16:
      map2_kernel<<<grid, 256, 0, detail::stream()>>>(a.data<bf16>(), b.data<bf16>(), out.data<bf16>(), n, f);
      break;
    default:
      map2_kernel<<<grid, 256, 0, detail::stream()>>>(a.data<f16>(), b.data<f16>(), out.data<f16>(), n, f);
      break;
  }
  detail::check_launch();
}

}  // namespace

void relu_forward(const Tensor& x, Tensor& y) {
  check_float(x, "relu_forward: x");
  check_same(x, y, "relu_forward: y");
  launch1(x, y, Relu{});
}

void relu_backward(const Tensor& y, const Tensor& dy, Tensor& dx) {
  check_float(y, "relu_backward: y");
  check_same(y, dy, "relu_backward: dy");
  check_same(y, dx, "relu_backward: dx");
  launch2(y, dy, dx, ReluGrad{});
}

void sigmoid_forward(const Tensor& x, Tensor& y) {
  check_float(x, "sigmoid_forward: x");
  check_same(x, y, "sigmoid_forward: y");
  launch1(x, y, Sigmoid{});
}

void sigmoid_backward(const Tensor& y, const Tensor& dy, Tensor& dx) {
  check_float(y, "sigmoid_backward: y");
  check_same(y, dy, "sigmoid_backward: dy");
  check_same(y, dx, "sigmoid_backward: dx");
  launch2(y, dy, dx, SigmoidGrad{});
}

}  // namespace rf::cuda
