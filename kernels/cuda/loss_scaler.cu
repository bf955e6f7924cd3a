// Device half of the dynamic loss scaler (kernels/loss_scaler.h): one pass per gradient tensor that
// multiplies by 1 / scale and raises a flag on inf/NaN. Every writer stores the same value 1, so the
// flag needs no atomics; the host reads it once after all tensors are queued.
#include <cuda_runtime.h>

#include "kernels/cuda/cuda_common.cuh"
#include "kernels/loss_scaler.h"

namespace rf::cuda {
namespace {

using detail::load_f32;
using detail::store_as;

template <class T>
__global__ void unscale_check_kernel(T* __restrict__ g, int64_t n, float inv_scale, int* __restrict__ flag) {
  const int64_t stride = static_cast<int64_t>(gridDim.x) * blockDim.x;
  bool bad = false;
  for (int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < n; i += stride) {
    float v = load_f32(g[i]);
    bad |= !isfinite(v);
    if (inv_scale != 1.0f) {
      v *= inv_scale;
      g[i] = store_as<T>(v);
    }
  }
  if (__syncthreads_or(bad) && threadIdx.x == 0) *flag = 1;
}

}  // namespace

bool unscale_and_check(const std::vector<Tensor*>& grads, float inv_scale) {
  if (grads.empty()) return false;
  const Device dev = grads.front()->device();
  detail::DeviceScope scope(dev.index);
  Tensor flag = Tensor::zeros({1}, DType::kI32, dev);
  for (Tensor* g : grads) {
    RF_CHECK(g->device() == dev, "unscale_and_check: gradients on ", g->device().str(), " and ", dev.str());
    const int64_t n = g->numel();
    if (n == 0) continue;
    const unsigned grid = detail::grid_for(n, 256, 4096);
    switch (g->dtype()) {
      case DType::kF32:
        unscale_check_kernel<<<grid, 256, 0, detail::stream()>>>(g->data<float>(), n, inv_scale, flag.data<int32_t>());
        break;
      case DType::kBF16:
        unscale_check_kernel<<<grid, 256, 0, detail::stream()>>>(g->data<bf16>(), n, inv_scale, flag.data<int32_t>());
        break;
      case DType::kF16:
        unscale_check_kernel<<<grid, 256, 0, detail::stream()>>>(g->data<f16>(), n, inv_scale, flag.data<int32_t>());
        break;
      default: throw ShapeError("unscale_and_check: gradients must be fp32, bf16 or fp16");
    }
    detail::check_launch();
  }
  return flag.to_vector<int32_t>()[0] != 0;  // the one sync
}

}  // namespace rf::cuda
