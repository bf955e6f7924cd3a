// Small helpers shared by the CPU kernels in kernels/cpu/: scalar conversions between the storage
// types and fp32, and parallel whole-buffer conversions used to stage 16-bit operands for BLAS.
#pragma once

#include <cstdint>
#include <vector>

#include "src/core/dtype.h"
#include "src/core/tensor.h"

namespace rf::cpu::detail {

inline float load_f32(float v) { return v; }
inline float load_f32(bf16 v) { return to_f32(v); }
inline float load_f32(f16 v) { return to_f32(v); }

template <class T>
inline T store_as(float v);
template <>
inline float store_as<float>(float v) { return v; }
template <>
inline bf16 store_as<bf16>(float v) { return to_bf16(v); }
template <>
inline f16 store_as<f16>(float v) { return to_f16(v); }

// dst[i] = fp32(src[i]) for i < n, OpenMP-parallel.
template <class T>
void widen(const T* src, float* dst, int64_t n) {
#pragma omp parallel for schedule(static)
  for (int64_t i = 0; i < n; ++i) dst[i] = load_f32(src[i]);
}

// dst[i] = T(src[i]) rounded to nearest even, OpenMP-parallel.
template <class T>
void narrow(const float* src, T* dst, int64_t n) {
#pragma omp parallel for schedule(static)
  for (int64_t i = 0; i < n; ++i) dst[i] = store_as<T>(src[i]);
}

// A tensor's elements as fp32: the tensor's own buffer when it is fp32, else a converted copy in
// `scratch`. Keeps the bf16 paths to one conversion per operand.
inline const float* as_f32(const Tensor& t, std::vector<float>& scratch) {
  switch (t.dtype()) {
    case DType::kF32:
      return t.data<float>();
    case DType::kBF16:
      scratch.resize(static_cast<size_t>(t.numel()));
      widen(t.data<bf16>(), scratch.data(), t.numel());
      return scratch.data();
    case DType::kF16:
      scratch.resize(static_cast<size_t>(t.numel()));
      widen(t.data<f16>(), scratch.data(), t.numel());
      return scratch.data();
    default:
      throw ShapeError(std::string("expected a floating tensor, got ") + dtype_name(t.dtype()));
  }
}

}  // namespace rf::cpu::detail
