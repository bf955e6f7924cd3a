// CUDA conversions between fp32, fp16 and bf16. The kernels call the same RF_HOST_DEVICE scalar
// functions of src/core/dtype.h as the CPU cast, so both backends round identically (nearest even,
// NaN kept quiet), bit for bit. Launched on the legacy default stream, which orders them with the
// allocator's cudaMemset/cudaMemcpy calls.
#include <cuda_runtime.h>

#include <cstring>

#include "kernels/cuda/cuda_ops.h"
#include "kernels/validate.h"
#include "src/core/dtype.h"

namespace rf::cuda {
namespace {

__device__ inline float load_f32(float v) { return v; }
__device__ inline float load_f32(bf16 v) { return to_f32(v); }
__device__ inline float load_f32(f16 v) { return to_f32(v); }

template <class T>
__device__ inline T store_as(float v);
template <>
__device__ inline float store_as<float>(float v) { return v; }
template <>
__device__ inline bf16 store_as<bf16>(float v) { return to_bf16(v); }
template <>
__device__ inline f16 store_as<f16>(float v) { return to_f16(v); }

template <class S, class D>
__global__ void cast_kernel(const S* __restrict__ src, D* __restrict__ dst, int64_t n) {
  const int64_t stride = static_cast<int64_t>(gridDim.x) * blockDim.x;
  for (int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < n; i += stride)
    dst[i] = store_as<D>(load_f32(src[i]));
}

template <class S, class D>
void launch(const Tensor& src, Tensor& dst) {
  const int64_t n = src.numel();
  constexpr int kThreads = 256;
  // Grid-stride loop: cap the grid so huge tensors reuse threads instead of overflowing gridDim.x.
  const int64_t blocks = std::min<int64_t>((n + kThreads - 1) / kThreads, 65535 * 8);
  cast_kernel<S, D><<<static_cast<unsigned>(blocks), kThreads>>>(static_cast<const S*>(src.raw()),
                                                                  static_cast<D*>(dst.raw()), n);
  RF_CHECK_CUDA(cudaGetLastError());
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

// Makes the tensors' device current for the launch and restores the caller's afterwards.
class DeviceScope {
 public:
  explicit DeviceScope(int device) {
    RF_CHECK_CUDA(cudaGetDevice(&previous_));
    if (previous_ != device) RF_CHECK_CUDA(cudaSetDevice(device));
  }
  ~DeviceScope() { cudaSetDevice(previous_); }

 private:
  int previous_ = 0;
};

}  // namespace

void cast(const Tensor& src, Tensor& dst) {
  checks::cast(src, dst);
  RF_CHECK(src.device().is_cuda() && dst.device() == src.device(), "cuda::cast: tensors on ", src.device().str(),
           " and ", dst.device().str());
  if (src.numel() == 0) return;
  DeviceScope scope(src.device().index);
  if (src.dtype() == dst.dtype()) {
    if (src.raw() != dst.raw())
      RF_CHECK_CUDA(cudaMemcpy(dst.raw(), src.raw(), src.nbytes(), cudaMemcpyDeviceToDevice));
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
