// The CUDA caching allocator and host<->device copies. Plain C++ against the CUDA runtime: no kernels
// here, so nvcc is not needed for this file.
#include <cuda_runtime.h>

#include <atomic>
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

// A block handed out: its rounded size and the private pool it belongs to (0: the shared cache).
struct Block {
  size_t size = 0;
  int pool = 0;
};

struct DeviceCache {
  std::mutex mutex;
  std::multimap<size_t, void*> free_blocks;             // block size -> pointer
  std::unordered_map<void*, Block> live_blocks;         // pointer -> block
  std::map<int, std::multimap<size_t, void*>> pools;    // live private pools and their free blocks
  int route = 0;                                        // the pool allocations come from, 0: none
  int next_pool = 1;
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

// Best fit among `blocks`, but never more than twice the request (that would waste memory); nullptr
// when none fits. `size` becomes the block's size.
void* take_block(std::multimap<size_t, void*>& blocks, size_t& size) {
  auto it = blocks.lower_bound(size);
  if (it == blocks.end() || it->first > 2 * size) return nullptr;
  size = it->first;
  void* ptr = it->second;
  blocks.erase(it);
  return ptr;
}

// cudaMalloc is not a stream operation, so a capture in the default (thread-local) mode refuses it;
// the pools keep what it returns for as long as the graph lives, which is what makes it safe here.
cudaError_t malloc_outside_capture(void** ptr, size_t size) {
  cudaStreamCaptureMode mode = cudaStreamCaptureModeRelaxed;
  cudaThreadExchangeStreamCaptureMode(&mode);
  const cudaError_t err = cudaMalloc(ptr, size);
  cudaThreadExchangeStreamCaptureMode(&mode);
  return err;
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

void* device_compute_stream(int device) {
  static std::atomic<cudaStream_t> streams[kMaxDevices] = {};
  RF_CHECK(device >= 0 && device < kMaxDevices, "device index ", device, " out of range");
  cudaStream_t s = streams[device].load(std::memory_order_acquire);
  if (s) return s;
  static std::mutex mu;
  std::lock_guard<std::mutex> lock(mu);
  s = streams[device].load(std::memory_order_acquire);
  if (!s) {
    CudaDeviceGuard guard(device);
    RF_CHECK_CUDA(cudaStreamCreateWithFlags(&s, cudaStreamDefault));
    streams[device].store(s, std::memory_order_release);
  }
  return s;
}

void* current_compute_stream() {
  int device = 0;
  RF_CHECK_CUDA(cudaGetDevice(&device));
  return device_compute_stream(device);
}

void* device_allocate(size_t bytes, int device) {
  DeviceCache& c = cache_for(device);
  size_t size = device_block_size(bytes);
  std::lock_guard<std::mutex> lock(c.mutex);
  void* ptr = nullptr;
  if (c.route) {  // a graph is being captured: its own free blocks first
    ptr = take_block(c.pools.at(c.route), size);
    if (ptr) {
      c.stats.bytes_in_pools -= size;
      ++c.stats.cache_hits;
    }
  }
  if (!ptr) {
    ptr = take_block(c.free_blocks, size);
    if (ptr) {
      c.stats.bytes_cached -= size;
      ++c.stats.cache_hits;
    }
  }
  if (!ptr) {  // `size` is still the rounded request: take_block changes it only when it finds a block
    CudaDeviceGuard guard(device);
    cudaError_t err = malloc_outside_capture(&ptr, size);
    if (err == cudaErrorMemoryAllocation) {
      cudaGetLastError();
      release_cached(c, device);
      err = malloc_outside_capture(&ptr, size);
    }
    if (err != cudaSuccess) {
      cudaGetLastError();
      throw BackendError("cuda:" + std::to_string(device) + ": cannot allocate " + std::to_string(bytes) +
                         " bytes (" + cudaGetErrorString(err) + "); in use " +
                         std::to_string(c.stats.bytes_in_use) + " bytes");
    }
    ++c.stats.driver_allocs;
  }
  c.live_blocks[ptr] = Block{size, c.route};
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
  const Block b = it->second;
  c.live_blocks.erase(it);
  c.stats.bytes_in_use -= b.size;
  // A live pool keeps its blocks; a block freed while a graph is captured joins that graph's pool; one
  // whose pool is gone joins the newest live pool, whose graph may use it too (it was live then).
  int pool = b.pool != 0 && c.pools.count(b.pool) ? b.pool : c.route;
  if (pool == 0 && b.pool != 0 && !c.pools.empty()) pool = c.pools.rbegin()->first;
  if (pool != 0) {
    c.pools.at(pool).emplace(b.size, ptr);
    c.stats.bytes_in_pools += b.size;
  } else {
    c.stats.bytes_cached += b.size;
    c.free_blocks.emplace(b.size, ptr);
  }
}

int device_pool_create(int device) {
  DeviceCache& c = cache_for(device);
  std::lock_guard<std::mutex> lock(c.mutex);
  const int id = c.next_pool++;
  c.pools[id];
  // The blocks live now (weights, optimizer state, activation buffers a model keeps between steps) may
  // be read or written by the graph: freed later, they are kept for it rather than handed out again.
  for (auto& [ptr, b] : c.live_blocks)
    if (b.pool == 0 || !c.pools.count(b.pool)) b.pool = id;
  return id;
}

void device_pool_route(int device, int pool) {
  DeviceCache& c = cache_for(device);
  std::lock_guard<std::mutex> lock(c.mutex);
  RF_CHECK(pool == 0 || c.pools.count(pool), "device_pool_route: no pool ", pool, " on cuda:", device);
  c.route = pool;
}

void device_pool_release(int device, int pool) {
  DeviceCache& c = cache_for(device);
  std::lock_guard<std::mutex> lock(c.mutex);
  auto it = c.pools.find(pool);
  if (it == c.pools.end()) return;
  std::multimap<size_t, void*> blocks = std::move(it->second);
  c.pools.erase(it);
  if (c.route == pool) c.route = 0;
  // While another graph lives, the blocks may be ones it uses (live when it was captured): they stay
  // reserved, in the newest live pool; else they go back to the cache.
  if (!c.pools.empty()) {
    c.pools.rbegin()->second.merge(blocks);
    return;
  }
  for (auto& [size, ptr] : blocks) {
    c.free_blocks.emplace(size, ptr);
    c.stats.bytes_in_pools -= size;
    c.stats.bytes_cached += size;
  }
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
  RF_CHECK_CUDA(cudaMemsetAsync(ptr, 0, bytes, static_cast<cudaStream_t>(device_compute_stream(device))));
}

namespace {

// On the compute stream of the device involved, in order with the kernels: a copy to the host waits for
// it; a copy from pageable host memory returns once the source is staged, so the caller may reuse it; one
// from page-locked memory is truly asynchronous and waits only when `wait_page_locked`. Between two
// devices: the synchronous copy.
void copy_on_stream(void* dst, Device dst_dev, const void* src, Device src_dev, size_t bytes, bool wait_page_locked) {
  if (bytes == 0) return;
  cudaMemcpyKind kind = dst_dev.is_cpu() ? (src_dev.is_cpu() ? cudaMemcpyHostToHost : cudaMemcpyDeviceToHost)
                                         : (src_dev.is_cpu() ? cudaMemcpyHostToDevice : cudaMemcpyDeviceToDevice);
  if (kind == cudaMemcpyHostToHost) {
    std::memcpy(dst, src, bytes);
    return;
  }
  if (kind == cudaMemcpyDeviceToDevice && dst_dev.index != src_dev.index) {
    RF_CHECK_CUDA(cudaMemcpy(dst, src, bytes, kind));
    return;
  }
  const int device = dst_dev.is_cpu() ? src_dev.index : dst_dev.index;
  CudaDeviceGuard guard(device);
  const cudaStream_t stream = static_cast<cudaStream_t>(device_compute_stream(device));
  RF_CHECK_CUDA(cudaMemcpyAsync(dst, src, bytes, kind, stream));
  bool wait = kind == cudaMemcpyDeviceToHost;
  if (kind == cudaMemcpyHostToDevice && wait_page_locked) {
    cudaPointerAttributes attr{};
    if (cudaPointerGetAttributes(&attr, src) != cudaSuccess) cudaGetLastError();
    wait = attr.type == cudaMemoryTypeHost;  // registered or cudaHostAlloc'd
  }
  if (wait) RF_CHECK_CUDA(cudaStreamSynchronize(stream));
}

}  // namespace

void copy_bytes(void* dst, Device dst_dev, const void* src, Device src_dev, size_t bytes) {
  copy_on_stream(dst, dst_dev, src, src_dev, bytes, true);
}

void copy_bytes_async(void* dst, Device dst_dev, const void* src, Device src_dev, size_t bytes) {
  copy_on_stream(dst, dst_dev, src, src_dev, bytes, false);
}

}  // namespace rf
