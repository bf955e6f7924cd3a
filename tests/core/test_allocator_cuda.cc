// The caching device allocator and host<->device copies. Needs a GPU; skips without one.
#include <gtest/gtest.h>

#include <numeric>

#include "src/core/allocator.h"
#include "src/core/tensor.h"

namespace rf {
namespace {

#define RF_REQUIRE_GPU() \
  if (!cuda_available()) GTEST_SKIP() << "no CUDA device found (cudaGetDeviceCount reports 0 or fails)"

TEST(CudaAllocator, RoundTripThroughDevice) {
  RF_REQUIRE_GPU();
  std::vector<float> v(10007);
  std::iota(v.begin(), v.end(), -5000.5f);
  Tensor h = Tensor::from_vector(v, {10007});
  Tensor d = h.to(Device::cuda(0));
  Tensor d2 = d.clone();
  EXPECT_EQ(d2.to(Device::cpu()).to_vector<float>(), v);
  d2.fill_zero();
  for (float x : d2.to_vector<float>()) ASSERT_EQ(x, 0.0f);
}

TEST(CudaAllocator, ReusesFreedBlocks) {
  RF_REQUIRE_GPU();
  DeviceAllocatorStats before = device_allocator_stats(0);
  void* first = nullptr;
  {
    Tensor a = Tensor::empty({1 << 20}, DType::kF32, Device::cuda(0));
    first = a.raw();
  }
  Tensor b = Tensor::empty({(1 << 20) - 100}, DType::kF32, Device::cuda(0));  // same 2 MiB granule
  DeviceAllocatorStats after = device_allocator_stats(0);
  EXPECT_EQ(b.raw(), first);
  EXPECT_EQ(after.cache_hits, before.cache_hits + 1);
  EXPECT_EQ(after.driver_allocs, before.driver_allocs + 1);
  EXPECT_EQ(device_block_size(1000), 1024u);
  EXPECT_EQ(device_block_size((1u << 20) + 1), 2u << 20);
}

}  // namespace
}  // namespace rf
