// Builds without CUDA: nothing is pinned and no copier can be made.
#include "dataloader/cuda/h2d_copy.h"

#include "src/core/error.h"

namespace rf::data {

bool pin_host_memory(void*, size_t) { return false; }
void unpin_host_memory(void*) {}
bool async_copy_available() { return false; }

struct AsyncBatchCopier::Impl {};

AsyncBatchCopier::AsyncBatchCopier(int) {
  throw BackendError("AsyncBatchCopier: recforge was built without CUDA (RECFORGE_CUDA=OFF)");
}
AsyncBatchCopier::~AsyncBatchCopier() = default;
const Batch& AsyncBatchCopier::copy_async(const Batch& host) { return host; }
void AsyncBatchCopier::wait_ready(void*) {}
void AsyncBatchCopier::mark_consumed(void*) {}
void AsyncBatchCopier::synchronize() {}

}  // namespace rf::data
