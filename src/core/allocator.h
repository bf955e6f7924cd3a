// Device memory for tensors: a caching allocator in front of cudaMalloc (like PyTorch's), so the step
// loop never calls cudaMalloc/cudaFree after the first step. Without CUDA these throw BackendError.
#pragma once

#include <cstddef>
#include <cstdint>

namespace rf {

struct Device;

// Number of visible CUDA devices; 0 when CUDA is not built or no device/driver is present.
int cuda_device_count();
bool cuda_available();

void* device_allocate(size_t bytes, int device);
// Returns the block to the cache. Blocks are reused in stream order: every recforge kernel on a device
// runs on the device's compute stream or synchronises with it before memory is freed.
void device_free(void* ptr, int device);
void device_memset_zero(void* ptr, size_t bytes, int device);
// Hands every cached, unused block back to the driver.
void device_empty_cache();
// Waits for all work queued on `device` (timing a step end to end); a no-op without CUDA.
void device_synchronize(int device);

struct DeviceAllocatorStats {
  size_t bytes_in_use = 0;     // handed out to tensors
  size_t bytes_cached = 0;     // held in the cache, free for reuse
  size_t peak_bytes_in_use = 0;
  uint64_t driver_allocs = 0;  // cudaMalloc calls
  uint64_t cache_hits = 0;     // allocations served from the cache
};
DeviceAllocatorStats device_allocator_stats(int device);

// The size the cache rounds a request to (exposed for tests): 512-byte granules up to 1 MiB, then
// 2 MiB granules, so that blocks of nearby sizes are interchangeable.
size_t device_block_size(size_t bytes);

}  // namespace rf
