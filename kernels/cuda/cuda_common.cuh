// Shared device-side helpers of the kernels in kernels/cuda/: fp32 loads and stores of the storage
// types (the same RF_HOST_DEVICE rounding as src/core/dtype.h, so CPU and CUDA round identically), a
// device scope, launch sizing, and warp/block reductions with a fixed order (deterministic results).
#pragma once

#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <cstdint>

#include "src/core/allocator.h"
#include "src/core/dtype.h"
#include "src/core/tensor.h"

namespace rf::cuda::detail {

__device__ __forceinline__ float load_f32(float v) { return v; }
__device__ __forceinline__ float load_f32(bf16 v) { return __uint_as_float(static_cast<uint32_t>(v.bits) << 16); }
// The hardware conversion: exact for every number, NaNs come out canonical (cast.cu keeps their payload).
__device__ __forceinline__ float load_f32(f16 v) { return __half2float(__ushort_as_half(v.bits)); }

template <class T>
__device__ __forceinline__ T store_as(float v);
template <>
__device__ __forceinline__ float store_as<float>(float v) { return v; }
template <>
__device__ __forceinline__ bf16 store_as<bf16>(float v) { return to_bf16(v); }
template <>
__device__ __forceinline__ f16 store_as<f16>(float v) { return to_f16(v); }

// Makes `device` current for the launches of one op and restores the caller's device afterwards.
class DeviceScope {
 public:
  explicit DeviceScope(int device) {
    RF_CHECK_CUDA(cudaGetDevice(&previous_));
    if (previous_ != device) RF_CHECK_CUDA(cudaSetDevice(device));
  }
  explicit DeviceScope(const Tensor& t) : DeviceScope(t.device().index) {}
  ~DeviceScope() { cudaSetDevice(previous_); }
  DeviceScope(const DeviceScope&) = delete;
  DeviceScope& operator=(const DeviceScope&) = delete;

 private:
  int previous_ = 0;
};

// Every recforge kernel, memset, copy, cub and cuBLASLt call runs on the current device's compute stream
// (src/core/allocator.h), the stream the allocator's copies and memsets use too, so freed blocks are
// reused in order and a training step can be captured into a CUDA graph.
inline cudaStream_t stream() { return static_cast<cudaStream_t>(current_compute_stream()); }

// Grid for a grid-stride loop over n elements, capped so that huge tensors reuse threads.
inline unsigned grid_for(int64_t n, int threads, int64_t cap = 65535 * 8) {
  const int64_t blocks = std::max<int64_t>(1, std::min<int64_t>((n + threads - 1) / threads, cap));
  return static_cast<unsigned>(blocks);
}

inline void check_launch() { RF_CHECK_CUDA(cudaGetLastError()); }

__device__ __forceinline__ float warp_sum(float v) {
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
  return v;
}

__device__ __forceinline__ double warp_sum(double v) {
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
  return v;
}

// Sum over a block of blockDim.x threads (a multiple of 32, at most 1024); the result is valid in
// thread 0. Fixed tree order: the same inputs give the same bits on every run.
template <class T>
__device__ T block_sum(T v) {
  __shared__ T partial[32];
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  v = warp_sum(v);
  __syncthreads();  // `partial` may still be read by a previous call
  if (lane == 0) partial[warp] = v;
  __syncthreads();
  const int warps = (blockDim.x + 31) >> 5;
  v = threadIdx.x < warps ? partial[threadIdx.x] : T(0);
  if (warp == 0) v = warp_sum(v);
  return v;
}

// V consecutive elements at p as fp32, in one 16- or 8-byte load when V * sizeof(T) is 16 (or 8 for a
// 16-bit T; the caller checks the alignment), else element by element.
template <class T, int V>
__device__ __forceinline__ void load_vec(const T* p, float (&out)[V]) {
  if constexpr (V == 4 && sizeof(T) == 4) {
    const float4 v = *reinterpret_cast<const float4*>(p);
    out[0] = v.x; out[1] = v.y; out[2] = v.z; out[3] = v.w;
  } else if constexpr (V == 8 && sizeof(T) == 2) {
    const uint4 v = *reinterpret_cast<const uint4*>(p);
    const uint32_t w[4] = {v.x, v.y, v.z, v.w};
#pragma unroll
    for (int i = 0; i < 4; ++i) {
      out[2 * i] = load_f32(T{static_cast<uint16_t>(w[i] & 0xffffu)});
      out[2 * i + 1] = load_f32(T{static_cast<uint16_t>(w[i] >> 16)});
    }
  } else if constexpr (V == 4 && sizeof(T) == 2) {
    const uint2 v = *reinterpret_cast<const uint2*>(p);
    const uint32_t w[2] = {v.x, v.y};
#pragma unroll
    for (int i = 0; i < 2; ++i) {
      out[2 * i] = load_f32(T{static_cast<uint16_t>(w[i] & 0xffffu)});
      out[2 * i + 1] = load_f32(T{static_cast<uint16_t>(w[i] >> 16)});
    }
  } else {
#pragma unroll
    for (int i = 0; i < V; ++i) out[i] = load_f32(p[i]);
  }
}

// Stores V fp32 values at p in T (rounded as store_as), in one 16- or 8-byte store when V * sizeof(T) is
// 16 or 8 (the caller checks the alignment), else element by element.
template <class T, int V>
__device__ __forceinline__ void store_vec(T* p, const float (&v)[V]) {
  if constexpr (V == 4 && sizeof(T) == 4) {
    *reinterpret_cast<float4*>(p) = make_float4(v[0], v[1], v[2], v[3]);
  } else if constexpr (sizeof(T) == 2 && (V == 4 || V == 8)) {
    uint32_t w[V / 2];
#pragma unroll
    for (int i = 0; i < V / 2; ++i)
      w[i] = static_cast<uint32_t>(store_as<T>(v[2 * i]).bits) | (static_cast<uint32_t>(store_as<T>(v[2 * i + 1]).bits) << 16);
    if constexpr (V == 4) *reinterpret_cast<uint2*>(p) = make_uint2(w[0], w[1]);
    else *reinterpret_cast<uint4*>(p) = make_uint4(w[0], w[1], w[2], w[3]);
  } else {
#pragma unroll
    for (int i = 0; i < V; ++i) p[i] = store_as<T>(v[i]);
  }
}

// Byte alignment of a pointer (its lowest set bit), capped at 256.
inline int alignment_of(const void* p) {
  const uintptr_t a = reinterpret_cast<uintptr_t>(p);
  if (a == 0) return 256;
  const int tz = __builtin_ctzll(static_cast<unsigned long long>(a));
  return tz >= 8 ? 256 : (1 << tz);
}

}  // namespace rf::cuda::detail
