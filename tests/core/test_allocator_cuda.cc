// The caching device allocator, host<->device copies, and CUDA graphs with their private pools. Needs a
// GPU; skips without one.
#include <gtest/gtest.h>

#include <cuda_runtime.h>

#include <algorithm>
#include <numeric>

#include "src/core/allocator.h"
#include "src/core/cuda_graph.h"
#include "src/core/error.h"
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

// copy_bytes queues its copy on the compute stream; from page-locked memory that copy is truly
// asynchronous, so copy_bytes must wait for it before the caller may reuse the source (a loader's
// pinned buffer). 64 MiB: long enough in flight that an early return would let the overwrite through.
TEST(CudaAllocator, CopyFromPageLockedMemoryIsCompleteOnReturn) {
  RF_REQUIRE_GPU();
  const int64_t n = int64_t{16} << 20;
  float* host = nullptr;
  ASSERT_EQ(cudaMallocHost(reinterpret_cast<void**>(&host), static_cast<size_t>(n) * sizeof(float)), cudaSuccess);
  for (int64_t i = 0; i < n; ++i) host[i] = static_cast<float>(i % 1000);
  Tensor d = Tensor::empty({n}, DType::kF32, Device::cuda(0));
  copy_bytes(d.raw(), d.device(), host, Device::cpu(), static_cast<size_t>(n) * sizeof(float));
  std::fill(host, host + n, -1.0f);
  const std::vector<float> back = d.to_vector<float>();
  int64_t wrong = 0;
  for (int64_t i = 0; i < n; ++i) wrong += back[static_cast<size_t>(i)] != static_cast<float>(i % 1000);
  EXPECT_EQ(wrong, 0);
  cudaFreeHost(host);
}

// A block the graph may use must not be handed to other work while the graph lives: blocks live when a
// pool is created, and blocks freed while it is routed, stay with the pool until it is released.
TEST(CudaAllocator, PoolKeepsItsBlocksUntilReleased) {
  RF_REQUIRE_GPU();
  const size_t bytes = 3u << 20;
  device_empty_cache();  // no cached blocks of other tests: every block below is one of these
  const size_t pools_before = device_allocator_stats(0).bytes_in_pools;
  void* before = device_allocate(bytes, 0);  // live when the pool is created: adopted
  const int pool = device_pool_create(0);
  device_free(before, 0);
  void* during = nullptr;
  device_pool_route(0, pool);
  during = device_allocate(bytes, 0);  // the pool's free block: the adopted one
  EXPECT_EQ(during, before);
  void* second = device_allocate(bytes, 0);  // nothing free in the pool or the cache: a new block
  device_free(second, 0);                    // freed while routed: back to the pool
  device_pool_route(0, 0);
  device_free(during, 0);
  EXPECT_GE(device_allocator_stats(0).bytes_in_pools, 2 * bytes);
  void* outside = device_allocate(bytes, 0);  // the shared cache must not hand out the pool's blocks
  EXPECT_NE(outside, before);
  EXPECT_NE(outside, second);
  device_free(outside, 0);
  device_pool_release(0, pool);
  EXPECT_EQ(device_allocator_stats(0).bytes_in_pools, pools_before);
  void* a = device_allocate(bytes, 0);
  void* b = device_allocate(bytes, 0);
  void* c = device_allocate(bytes, 0);
  // After the release, all three blocks are the cache's again.
  for (void* p : {before, second, outside}) EXPECT_TRUE(p == a || p == b || p == c);
  for (void* p : {a, b, c}) device_free(p, 0);
}

// A captured copy + kernel sequence runs on every replay with the inputs of that moment; nothing runs at
// capture time.
TEST(CudaGraph, ReplaysTheCapturedWorkWithTheCurrentInputs) {
  RF_REQUIRE_GPU();
  const Device dev = Device::cuda(0);
  Tensor src = Tensor::from_vector<float>({1, 2, 3, 4}, {4}).to(dev);
  Tensor dst = Tensor::zeros({4}, DType::kF32, dev);
  Tensor zeroed = Tensor::from_vector<float>({9, 9}, {2}).to(dev);
  CudaGraph graph(0);
  graph.capture("test", [&] {
    dst.copy_from(src);   // device-to-device on the compute stream
    zeroed.fill_zero();  // memset on the compute stream
  });
  ASSERT_TRUE(graph.captured());
  EXPECT_EQ(dst.to_vector<float>(), (std::vector<float>{0, 0, 0, 0}));  // captured, not run
  EXPECT_EQ(zeroed.to_vector<float>(), (std::vector<float>{9, 9}));
  graph.replay();
  EXPECT_EQ(dst.to_vector<float>(), (std::vector<float>{1, 2, 3, 4}));
  EXPECT_EQ(zeroed.to_vector<float>(), (std::vector<float>{0, 0}));
  src.copy_from(Tensor::from_vector<float>({5, 6, 7, 8}, {4}));
  graph.replay();
  EXPECT_EQ(dst.to_vector<float>(), (std::vector<float>{5, 6, 7, 8}));
}

// Reading device memory on the host inside a capture cannot work (nothing has run): the capture fails
// with a BackendError naming it, and the device and the allocator keep working.
TEST(CudaGraph, ASynchronisingCallFailsTheCaptureCleanly) {
  RF_REQUIRE_GPU();
  const Device dev = Device::cuda(0);
  Tensor t = Tensor::from_vector<float>({1, 2}, {2}).to(dev);
  CudaGraph graph(0);
  try {
    graph.capture("host read", [&] { t.to_vector<float>(); });
    FAIL() << "a capture with a device-to-host read succeeded";
  } catch (const BackendError& e) {
    EXPECT_NE(std::string(e.what()).find("host read: CUDA graph capture failed"), std::string::npos) << e.what();
  }
  EXPECT_FALSE(graph.captured());
  EXPECT_EQ(t.to_vector<float>(), (std::vector<float>{1, 2}));
  Tensor u = t.clone();
  EXPECT_EQ(u.to_vector<float>(), (std::vector<float>{1, 2}));
}

}  // namespace
}  // namespace rf
