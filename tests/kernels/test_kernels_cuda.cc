// CUDA kernels against the CPU ones on random inputs. Skips (with the reason) when no device is
// present; ops without a CUDA version must say so with BackendError.
#include <gtest/gtest.h>

#include <cstring>

#include "kernels/cast.h"
#include "kernels/linear.h"
#include "src/core/allocator.h"
#include "tests/kernels/test_util.h"

namespace rf::test {
namespace {

#define RF_REQUIRE_GPU()                                                             \
  do {                                                                               \
    if (!cuda_available()) GTEST_SKIP() << "no CUDA device visible to this process"; \
  } while (0)

std::vector<uint8_t> raw_bytes(const Tensor& host) {
  std::vector<uint8_t> v(host.nbytes());
  std::memcpy(v.data(), host.raw(), v.size());
  return v;
}

// Random fp32 values over a wide range, plus random bit patterns (NaN, inf, subnormals) and values
// of every 16-bit pattern for the 16-bit sources.
Tensor random_source(DType dt, int64_t n, uint64_t seed) {
  Rng rng(seed);
  Tensor t = Tensor::empty({n}, dt);
  for (int64_t i = 0; i < n; ++i) {
    const float f = (i % 4 == 0) ? bits_f32(rng.bits32()) : static_cast<float>(rng.uniform(-70000.0, 70000.0));
    if (dt == DType::kF32) t.data<float>()[i] = f;
    else if (dt == DType::kF16) t.data<f16>()[i] = f16{static_cast<uint16_t>(i % 4 == 0 ? i & 0xffff : to_f16(f).bits)};
    else t.data<bf16>()[i] = bf16{static_cast<uint16_t>(i % 4 == 0 ? i & 0xffff : to_bf16(f).bits)};
  }
  return t;
}

TEST(CudaCast, MatchesCpuBitExactly) {
  RF_REQUIRE_GPU();
  const DType types[] = {DType::kF32, DType::kF16, DType::kBF16};
  uint64_t seed = 1;
  for (int64_t n : {int64_t{1}, int64_t{1000}, int64_t{(1 << 20) + 17}})
    for (DType from : types)
      for (DType to : types) {
        SCOPED_TRACE(::testing::Message() << dtype_name(from) << " -> " << dtype_name(to) << " n " << n);
        Tensor src = random_source(from, n, seed++);
        Tensor cpu_dst = Tensor::empty({n}, to);
        cast(src, cpu_dst);
        Tensor dev_src = src.to(Device::cuda(0));
        Tensor dev_dst = Tensor::empty({n}, to, Device::cuda(0));
        cast(dev_src, dev_dst);
        Tensor back = dev_dst.to(Device::cpu());
        EXPECT_TRUE(raw_bytes(back) == raw_bytes(cpu_dst)) << "CUDA and CPU casts differ";
      }
}

TEST(CudaDispatch, OpsWithoutCudaVersionThrowBackendError) {
  RF_REQUIRE_GPU();
  const Device d = Device::cuda(0);
  Tensor x = Tensor::zeros({2, 3}, DType::kF32, d), w = Tensor::zeros({4, 3}, DType::kF32, d),
         y = Tensor::zeros({2, 4}, DType::kF32, d);
  EXPECT_THROW(linear_forward(x, w, nullptr, y), BackendError);
  Tensor host_y = Tensor::zeros({2, 4}, DType::kF32);
  EXPECT_THROW(linear_forward(x, w, nullptr, host_y), ShapeError);  // mixed devices
}

}  // namespace
}  // namespace rf::test
