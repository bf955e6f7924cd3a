// The CUDA caching allocator and host<->device copies. Plain C++ against the CUDA runtime: no kernels
// here, so nvcc is not needed for this file.
#include <cuda_runtime.h>

#include <cstring>
#include <map>
#include <mutex>
#include <unordered_map>
#include <vector>

#include "src/core/allocator.h"
#include "src/core/cuda_device_guard.h"
#include "src/core/error.h"
#include "src/core/tensor.h"

namespace rf {
namespace {

constexpr size_t kSmallGranule = 512;
constexpr size_t kLargeGranule = 2u << 20;
constexpr size_t kSmallLimit = 1u << 20;
constexpr int kMaxDevices = 64;

struct DeviceCache {
  std::mutex mutex;
  std::multimap<size_t, void*> free_blocks;        // block size -> pointer
  std::unordered_map<void*, size_t> live_blocks;   // pointer -> block size
  DeviceAllocatorStats stats;
};

DeviceCache& cache_for(int device) {
  static DeviceCache caches[kMaxDevices];
  RF_CHECK(device >= 0 && device < kMaxDevices, "device index ", device, " out of range");
  return caches[device];
}

void release_cached(DeviceCache& c, int device) {
  CudaDeviceGuard guard(device);
  for (auto& [size, ptr] : c.free_blocks) {
    cudaFree(ptr);
    c.stats.bytes_cached -= size;
  }
  c.free_blocks.clear();
}

}  // namespace

int cuda_device_count() {
  int n = 0;
  if (cudaGetDeviceCount(&n) != cudaSuccess) {
    cudaGetLastError();  // clear the sticky "no driver/no device" error
    return 0;
  }
  return n;
}

bool cuda_available() { return cuda_device_count() > 0; }

size_t device_block_size(size_t bytes) {
  if (bytes == 0) bytes = 1;
  size_t g = bytes <= kSmallLimit ? kSmallGranule : kLargeGranule;
  return (bytes + g - 1) / g * g;
}

void* device_allocate(size_t bytes, int device) {
  DeviceCache& c = cache_for(device);
  size_t size = device_block_size(bytes);
  std::lock_guard<std::mutex> lock(c.mutex);
  void* ptr = nullptr;
  // Best fit among cached blocks, but never more than twice the request (that would waste memory).
  auto it = c.free_blocks.lower_bound(size);
  if (it != c.free_blocks.end() && it->first <= 2 * size) {
    size = it->first;
    ptr = it->second;
    c.free_blocks.erase(it);
    c.stats.bytes_cached -= size;
    ++c.stats.cache_hits;
  } else {
    CudaDeviceGuard guard(device);
    cudaError_t err = cudaMalloc(&ptr, size);
    if (err == cudaErrorMemoryAllocation) {
      cudaGetLastError();
      release_cached(c, device);
      err = cudaMalloc(&ptr, size);
    }
    if (err != cudaSuccess) {
      cudaGetLastError();
      throw BackendError("cuda:" + std::to_string(device) + ": cannot allocate " + std::to_string(bytes) +
                         " bytes (" + cudaGetErrorString(err) + "); in use " +
                         std::to_string(c.stats.bytes_in_use) + " bytes");
    }
    ++c.stats.driver_allocs;
  }
  c.live_blocks[ptr] = size;
  c.stats.bytes_in_use += size;
  if (c.stats.bytes_in_use > c.stats.peak_bytes_in_use) c.stats.peak_bytes_in_use = c.stats.bytes_in_use;
  return ptr;
}

void device_free(void* ptr, int device) {
  if (!ptr) return;
  DeviceCache& c = cache_for(device);
  std::lock_guard<std::mutex> lock(c.mutex);
  auto it = c.live_blocks.find(ptr);
  RF_CHECK(it != c.live_blocks.end(), "device_free of a pointer the allocator does not own");
  size_t size = it->second;
  c.live_blocks.erase(it);
  c.stats.bytes_in_use -= size;
  c.stats.bytes_cached += size;
  c.free_blocks.emplace(size, ptr);
}

void device_empty_cache() {
  int n = cuda_device_count();
  for (int d = 0; d < n && d < kMaxDevices; ++d) {
    DeviceCache& c = cache_for(d);
    std::lock_guard<std::mutex> lock(c.mutex);
    release_cached(c, d);
  }
}

DeviceAllocatorStats device_allocator_stats(int device) {
  DeviceCache& c = cache_for(device);
  std::lock_guard<std::mutex> lock(c.mutex);
  return c.stats;
}

void device_synchronize(int device) {
  CudaDeviceGuard guard(device);
  RF_CHECK_CUDA(cudaDeviceSynchronize());
}

void device_memset_zero(void* ptr, size_t bytes, int device) {
  CudaDeviceGuard guard(device);
  RF_CHECK_CUDA(cudaMemset(ptr, 0, bytes));
}

void copy_bytes(void* dst, Device dst_dev, const void* src, Device src_dev, size_t bytes) {
  if (bytes == 0) return;
  cudaMemcpyKind kind = dst_dev.is_cpu() ? (src_dev.is_cpu() ? cudaMemcpyHostToHost : cudaMemcpyDeviceToHost)
                                         : (src_dev.is_cpu() ? cudaMemcpyHostToDevice : cudaMemcpyDeviceToDevice);
  if (kind == cudaMemcpyHostToHost) {
    std::memcpy(dst, src, bytes);
    return;
  }
  RF_CHECK_CUDA(cudaMemcpy(dst, src, bytes, kind));
}

}  // namespace rf
