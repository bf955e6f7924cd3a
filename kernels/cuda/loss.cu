// CUDA binary cross-entropy on logits. The forward reduces in double in two fixed-shape passes (block
// partials, then one block over the partials), so the mean is bit-reproducible run to run without
// atomics; the backward is elementwise.
#include <cuda_runtime.h>

#include "kernels/cuda/cuda_common.cuh"
#include "kernels/cuda/cuda_ops.h"
#include "kernels/validate.h"

namespace rf::cuda {
namespace {

constexpr int kThreads = 256;
constexpr int kMaxBlocks = 1024;

__global__ void __launch_bounds__(kThreads) bce_partial_kernel(const float* __restrict__ z,
                                                               const float* __restrict__ y, int64_t n,
                                                               double* __restrict__ partial) {
  double acc = 0.0;
  const int64_t stride = static_cast<int64_t>(gridDim.x) * blockDim.x;
  for (int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < n; i += stride) {
    const double zi = z[i];
    acc += fmax(zi, 0.0) - zi * static_cast<double>(y[i]) + log1p(exp(-fabs(zi)));
  }
  acc = detail::block_sum(acc);
  if (threadIdx.x == 0) partial[blockIdx.x] = acc;
}

__global__ void __launch_bounds__(kMaxBlocks) bce_final_kernel(const double* __restrict__ partial, int blocks,
                                                               int64_t n, double* __restrict__ mean_d,
                                                               float* __restrict__ mean_f) {
  double acc = threadIdx.x < blocks ? partial[threadIdx.x] : 0.0;
  acc = detail::block_sum(acc);
  if (threadIdx.x == 0) {
    const double mean = acc / static_cast<double>(n);
    if (mean_d) *mean_d = mean;
    if (mean_f) *mean_f = static_cast<float>(mean);
  }
}

__global__ void bce_grad_kernel(const float* __restrict__ z, const float* __restrict__ y, float k, int64_t n,
                                float* __restrict__ g) {
  const int64_t stride = static_cast<int64_t>(gridDim.x) * blockDim.x;
  for (int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < n; i += stride) {
    const float zi = z[i];
    const float e = expf(-fabsf(zi));
    const float s = zi >= 0.0f ? 1.0f / (1.0f + e) : e / (1.0f + e);
    g[i] = k * (s - y[i]);
  }
}

// Launches both passes; the mean lands in mean_d (double) and/or mean_f (fp32) on the device.
void bce_mean(const Tensor& logits, const Tensor& labels, int64_t n, double* mean_d, float* mean_f) {
  const int blocks = static_cast<int>(std::min<int64_t>((n + kThreads - 1) / kThreads, kMaxBlocks));
  Tensor partial = Tensor::empty({blocks}, DType::kI64, logits.device());  // 8-byte slots for doubles
  bce_partial_kernel<<<blocks, kThreads, 0, detail::stream()>>>(logits.data<float>(), labels.data<float>(), n,
                                                                static_cast<double*>(partial.raw()));
  detail::check_launch();
  // One block of a multiple of 32 threads covering every partial.
  const int final_threads = std::max(32, (blocks + 31) / 32 * 32);
  bce_final_kernel<<<1, final_threads, 0, detail::stream()>>>(static_cast<const double*>(partial.raw()), blocks, n,
                                                              mean_d, mean_f);
  detail::check_launch();
}

}  // namespace

double bce_with_logits_forward(const Tensor& logits, const Tensor& labels) {
  const int64_t n = checks::bce_with_logits_forward(logits, labels);
  detail::DeviceScope scope(logits);
  Tensor mean = Tensor::empty({1}, DType::kI64, logits.device());
  bce_mean(logits, labels, n, static_cast<double*>(mean.raw()), nullptr);
  double out = 0.0;
  copy_bytes(&out, Device::cpu(), mean.raw(), mean.device(), sizeof(out));
  return out;
}

void bce_with_logits_forward_device(const Tensor& logits, const Tensor& labels, Tensor& loss) {
  const int64_t n = checks::bce_with_logits_forward(logits, labels);
  check_shape(loss, {1}, "bce_with_logits_forward: loss");
  check_dtype(loss, DType::kF32, "bce_with_logits_forward: loss");
  detail::DeviceScope scope(logits);
  bce_mean(logits, labels, n, nullptr, loss.data<float>());
}

void bce_with_logits_backward(const Tensor& logits, const Tensor& labels, float scale, Tensor& grad) {
  const int64_t n = checks::bce_with_logits_backward(logits, labels, grad);
  if (n == 0) return;
  detail::DeviceScope scope(logits);
  const float k = scale / static_cast<float>(n);
  bce_grad_kernel<<<detail::grid_for(n, 256), 256, 0, detail::stream()>>>(logits.data<float>(), labels.data<float>(),
                                                                          k, n, grad.data<float>());
  detail::check_launch();
}

}  // namespace rf::cuda
