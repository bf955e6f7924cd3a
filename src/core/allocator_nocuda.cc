// Device memory entry points for a build without CUDA: every device request is an error that says so.
#include <cstring>

#include "src/core/allocator.h"
#include "src/core/error.h"
#include "src/core/tensor.h"

namespace rf {

static void no_cuda() { throw BackendError("this recforge was built without CUDA (RECFORGE_CUDA=OFF)"); }

int cuda_device_count() { return 0; }
bool cuda_available() { return false; }
size_t device_block_size(size_t bytes) { return bytes; }
void* device_allocate(size_t, int) { no_cuda(); return nullptr; }
void device_free(void*, int) {}
void* device_compute_stream(int) { no_cuda(); return nullptr; }
void* current_compute_stream() { no_cuda(); return nullptr; }
int device_pool_create(int) { no_cuda(); return 0; }
void device_pool_route(int, int) {}
void device_pool_release(int, int) {}
void device_memset_zero(void*, size_t, int) { no_cuda(); }
void device_empty_cache() {}
void device_synchronize(int) {}
DeviceAllocatorStats device_allocator_stats(int) { return {}; }

void copy_bytes(void* dst, Device dst_dev, const void* src, Device src_dev, size_t bytes) {
  if (!dst_dev.is_cpu() || !src_dev.is_cpu()) no_cuda();
  if (bytes) std::memcpy(dst, src, bytes);
}

void copy_bytes_async(void* dst, Device dst_dev, const void* src, Device src_dev, size_t bytes) {
  copy_bytes(dst, dst_dev, src, src_dev, bytes);
}

}  // namespace rf
