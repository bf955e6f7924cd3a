// Page-locked host buffers and asynchronous host-to-device copies of a batch on the loader's own CUDA
// stream, double-buffered on the device. The dataloader knows streams and pinned memory, not models:
// the trainer hands its compute stream in and gets device tensors back. Without CUDA (or without a
// device) pinning reports false and AsyncBatchCopier throws BackendError when constructed.
#pragma once

#include <cstddef>
#include <memory>

#include "dataloader/batch.h"

namespace rf::data {

// Page-locks [ptr, ptr + bytes) (cudaHostRegister) so copies from it are truly asynchronous. Returns
// false, changing nothing, when CUDA is not built, no device is present or the driver refuses.
bool pin_host_memory(void* ptr, size_t bytes);
void unpin_host_memory(void* ptr);  // for a pointer pin_host_memory accepted
bool async_copy_available();        // CUDA built and a device present

class AsyncBatchCopier {
 public:
  explicit AsyncBatchCopier(int device);
  ~AsyncBatchCopier();
  AsyncBatchCopier(const AsyncBatchCopier&) = delete;
  AsyncBatchCopier& operator=(const AsyncBatchCopier&) = delete;

  // Enqueues copies of `host` into the next of two device batches on the copier's stream and returns
  // that device batch. Before the copy it waits (on the GPU) until the stream given to mark_consumed()
  // for that buffer's previous batch has passed that point. `host` must stay unchanged until the copy
  // is complete (the prefetch buffers guarantee this for the batch before the current one).
  const Batch& copy_async(const Batch& host);
  // Makes `compute_stream` (a cudaStream_t; nullptr = the device's compute stream, src/core/allocator.h)
  // wait for the last copy.
  void wait_ready(void* compute_stream);
  // Records that work queued so far on `compute_stream` is the last use of the last copied batch.
  void mark_consumed(void* compute_stream);
  // Blocks the host until the last copy is complete.
  void synchronize();

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace rf::data
