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

// The device's compute stream (a cudaStream_t, created on first use and kept for the process): every
// recforge kernel, memset and copy on that device is queued on it, which is what makes the cache's
// reuse of freed blocks safe and lets a CUDA graph capture a training step (the legacy default stream
// cannot be captured). It is a blocking stream: work other libraries queue on the legacy default
// stream still runs in order with it. Throws BackendError without CUDA.
void* device_compute_stream(int device);
// The compute stream of the calling thread's current CUDA device (cudaGetDevice).
void* current_compute_stream();

void* device_allocate(size_t bytes, int device);
// Returns the block to the cache. Blocks are reused in stream order: every recforge kernel on a device
// runs on the device's compute stream or synchronises with it before memory is freed.
void device_free(void* ptr, int device);

// Private pools for CUDA graphs (src/core/cuda_graph.h). A captured graph replays with the addresses it
// was recorded with, so no block it may touch can go to other work while the graph lives: a new pool
// adopts every block live at its creation (freed later, those come back to the pool, not the cache);
// while it is routed (device_pool_route), every allocation on the device comes from it, or from the
// cache or the driver into it, and every block freed goes to it, wherever that block came from. Its
// blocks are only ever reused by captures into the same pool. Releasing the last live pool hands its
// free blocks to the cache, and its blocks still held by tensors go there when those are freed; while
// other pools live, they go to the newest of them instead (its graph may use them too).
int device_pool_create(int device);              // a new pool id (> 0)
void device_pool_route(int device, int pool);    // 0: back to the shared cache
void device_pool_release(int device, int pool);
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
  size_t bytes_in_pools = 0;   // free blocks reserved for CUDA graphs' private pools
};
DeviceAllocatorStats device_allocator_stats(int device);

// The size the cache rounds a request to (exposed for tests): 512-byte granules up to 1 MiB, then
// 2 MiB granules, so that blocks of nearby sizes are interchangeable.
size_t device_block_size(size_t bytes);

}  // namespace rf
