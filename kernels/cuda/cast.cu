// CUDA conversions between fp32, fp16 and bf16. The kernels call the same RF_HOST_DEVICE scalar
// functions of src/core/dtype.h as the CPU cast, so both backends round identically (nearest even,
// NaN kept quiet), bit for bit. Queued on the device's compute stream like every other op.
#include <cuda_runtime.h>

#include <cstring>
#include <type_traits>

#include "kernels/cuda/cuda_common.cuh"
#include "kernels/cuda/cuda_ops.h"
#include "kernels/validate.h"
#include "src/core/dtype.h"

namespace rf::cuda {
namespace {

using detail::store_as;

// The widening of src/core/dtype.h, not the hardware conversion the other kernels load with
// (detail::load_f32): cvt.f32.f16 turns every fp16 NaN into the canonical NaN, while the CPU cast keeps
// its payload and sign. Equal for every other value.
template <class S>
__device__ __forceinline__ float widen(S v) {
  if constexpr (std::is_same_v<S, float>) return v;
  else return to_f32(v);
}

template <class S, class D>
__global__ void cast_kernel(const S* __restrict__ src, D* __restrict__ dst, int64_t n) {
  const int64_t stride = static_cast<int64_t>(gridDim.x) * blockDim.x;
  for (int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < n; i += stride)
    dst[i] = store_as<D>(widen(src[i]));
}

template <class S, class D>
void launch(const Tensor& src, Tensor& dst) {
  const int64_t n = src.numel();
  constexpr int kThreads = 256;
  // Grid-stride loop: the grid is capped so huge tensors reuse threads instead of overflowing gridDim.x.
  cast_kernel<S, D><<<detail::grid_for(n, kThreads), kThreads, 0, detail::stream()>>>(
      static_cast<const S*>(src.raw()), static_cast<D*>(dst.raw()), n);
  detail::check_launch();
}

template <class S>
void launch_from(const Tensor& src, Tensor& dst) {
  switch (dst.dtype()) {
    case DType::kF32: return launch<S, float>(src, dst);
    case DType::kF16: return launch<S, f16>(src, dst);
    case DType::kBF16: return launch<S, bf16>(src, dst);
    default: break;
  }
}

}  // namespace

void cast(const Tensor& src, Tensor& dst) {
  checks::cast(src, dst);
  RF_CHECK(src.device().is_cuda() && dst.device() == src.device(), "cuda::cast: tensors on ", src.device().str(),
           " and ", dst.device().str());
  if (src.numel() == 0) return;
  detail::DeviceScope scope(src.device().index);
  if (src.dtype() == dst.dtype()) {
    if (src.raw() != dst.raw())
      RF_CHECK_CUDA(cudaMemcpyAsync(dst.raw(), src.raw(), src.nbytes(), cudaMemcpyDeviceToDevice, detail::stream()));
    return;
  }
  switch (src.dtype()) {
    case DType::kF32: return launch_from<float>(src, dst);
    case DType::kF16: return launch_from<f16>(src, dst);
    case DType::kBF16: return launch_from<bf16>(src, dst);
    default: break;
  }
}

}  // namespace rf::cuda
