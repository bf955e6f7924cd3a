// Helpers of the CUDA kernel tests: the skip macro, host<->device copies, NaN poisoning of device
// outputs (so an element a kernel forgets to write fails the comparison), and random bags.
#pragma once

#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <vector>

#include "src/core/allocator.h"
#include "tests/kernels/test_util.h"

namespace rf::test {

#define RF_REQUIRE_GPU()                                                                                  \
  do {                                                                                                    \
    if (!::rf::cuda_available()) GTEST_SKIP() << "no CUDA device visible to this process (cuda_available() " \
                                                 "is false): the CUDA kernels cannot run here";           \
  } while (0)

inline const Device kDev = Device::cuda(0);

inline Tensor dev(const Tensor& host) { return host.to(kDev); }
inline Tensor host(const Tensor& d) { return d.to(Device::cpu()); }

// A tensor of NaN (floating) or -1 (integer) of the given shape and dtype, on `device`.
inline Tensor poisoned(const Shape& shape, DType dt, Device device) {
  Tensor h = Tensor::empty(shape, dt);
  for (int64_t i = 0; i < h.numel(); ++i) {
    switch (dt) {
      case DType::kF32: h.data<float>()[i] = NAN; break;
      case DType::kBF16: h.data<bf16>()[i] = to_bf16(NAN); break;
      case DType::kF16: h.data<f16>()[i] = to_f16(NAN); break;
      case DType::kI32: h.data<int32_t>()[i] = -1; break;
      case DType::kI64: h.data<int64_t>()[i] = -1; break;
    }
  }
  return device.is_cpu() ? h : h.to(device);
}

// Values exactly representable in `dt`, kept as fp32: lets a 16-bit GPU path be checked against the
// fp32 CPU op on the same numbers.
inline Tensor rounded_f32(Rng& rng, const Shape& shape, DType dt, double lo = -1.0, double hi = 1.0) {
  Tensor t = Tensor::empty(shape, DType::kF32);
  for (int64_t i = 0; i < t.numel(); ++i) {
    const float f = static_cast<float>(rng.uniform(lo, hi));
    t.data<float>()[i] = dt == DType::kBF16 ? to_f32(to_bf16(f)) : dt == DType::kF16 ? to_f32(to_f16(f)) : f;
  }
  return t;
}

struct Bags {
  std::vector<int64_t> indices, offsets;
};

// Lengths in [0, max_len] (bag 0 always empty when batch > 2); a small `rows` forces repeats.
inline Bags random_bags(Rng& rng, int64_t batch, int64_t rows, int64_t max_len) {
  Bags b;
  b.offsets.push_back(0);
  for (int64_t i = 0; i < batch; ++i) {
    const int64_t len = (i == 0 && batch > 2) ? 0 : rng.integer(0, max_len);
    for (int64_t k = 0; k < len; ++k) b.indices.push_back(rng.integer(0, rows - 1));
    b.offsets.push_back(static_cast<int64_t>(b.indices.size()));
  }
  return b;
}

// The bytes of a host tensor, for bit-for-bit comparisons.
inline std::vector<uint8_t> raw_bytes(const Tensor& host) {
  std::vector<uint8_t> v(host.nbytes());
  std::memcpy(v.data(), host.raw(), v.size());
  return v;
}

inline Tensor i64(const std::vector<int64_t>& v) { return Tensor::from_vector(v, {static_cast<int64_t>(v.size())}); }

// Pointers to the tensors of `v`, as the many-table and multi-tensor ops take them (valid while `v`
// keeps its elements).
inline std::vector<Tensor*> pointers(std::vector<Tensor>& v) {
  std::vector<Tensor*> p;
  for (Tensor& t : v) p.push_back(&t);
  return p;
}
inline std::vector<const Tensor*> const_pointers(const std::vector<Tensor>& v) {
  std::vector<const Tensor*> p;
  for (const Tensor& t : v) p.push_back(&t);
  return p;
}

}  // namespace rf::test
