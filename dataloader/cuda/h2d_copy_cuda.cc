// cudaHostRegister for the prefetch buffers and cudaMemcpyAsync of a batch on the copier's own
// non-blocking stream. Two device batches alternate; events order the copy against the consumer.
#include <cuda_runtime.h>

#include <array>

#include "dataloader/cuda/h2d_copy.h"
#include "src/core/allocator.h"
#include "src/core/error.h"

namespace rf::data {

bool async_copy_available() { return cuda_device_count() > 0; }

bool pin_host_memory(void* ptr, size_t bytes) {
  if (!ptr || bytes == 0 || !async_copy_available()) return false;
  if (cudaHostRegister(ptr, bytes, cudaHostRegisterDefault) != cudaSuccess) {
    cudaGetLastError();  // clear the sticky-free error so later calls are not blamed
    return false;
  }
  return true;
}

void unpin_host_memory(void* ptr) {
  if (ptr && cudaHostUnregister(ptr) != cudaSuccess) cudaGetLastError();
}

struct AsyncBatchCopier::Impl {
  int device = 0;
  cudaStream_t stream = nullptr;
  std::array<Batch, 2> cap;  // device capacity tensors, reused
  std::array<Batch, 2> dev;  // views of cap at the last copied batch's shapes
  std::array<cudaEvent_t, 2> ready{}, consumed{};
  std::array<bool, 2> consumed_recorded{false, false};
  int cur = 1;
};

namespace {

// A device tensor with room for `like` (reallocated when too small), viewed at like's shape.
Tensor device_like(Tensor& slot, const Tensor& like, int device) {
  if (!slot.defined() || slot.numel() < like.numel() || slot.dtype() != like.dtype())
    slot = Tensor::empty({std::max<int64_t>(like.numel() + like.numel() / 2, 1)}, like.dtype(), Device::cuda(device));
  return slot.slice_rows(0, like.numel()).view(like.shape());
}

}  // namespace

AsyncBatchCopier::AsyncBatchCopier(int device) : impl_(std::make_unique<Impl>()) {
  if (!async_copy_available()) throw BackendError("AsyncBatchCopier: no CUDA device is present");
  impl_->device = device;
  RF_CHECK_CUDA(cudaSetDevice(device));
  RF_CHECK_CUDA(cudaStreamCreateWithFlags(&impl_->stream, cudaStreamNonBlocking));
  for (int i = 0; i < 2; ++i) {
    RF_CHECK_CUDA(cudaEventCreateWithFlags(&impl_->ready[i], cudaEventDisableTiming));
    RF_CHECK_CUDA(cudaEventCreateWithFlags(&impl_->consumed[i], cudaEventDisableTiming));
  }
}

AsyncBatchCopier::~AsyncBatchCopier() {
  if (!impl_) return;
  cudaStreamSynchronize(impl_->stream);
  for (int i = 0; i < 2; ++i) {
    cudaEventDestroy(impl_->ready[i]);
    cudaEventDestroy(impl_->consumed[i]);
  }
  cudaStreamDestroy(impl_->stream);
}

const Batch& AsyncBatchCopier::copy_async(const Batch& host) {
  Impl& m = *impl_;
  RF_CHECK_CUDA(cudaSetDevice(m.device));
  m.cur ^= 1;
  const int i = m.cur;
  // The buffer's previous batch must be consumed before it is overwritten.
  if (m.consumed_recorded[i]) RF_CHECK_CUDA(cudaStreamWaitEvent(m.stream, m.consumed[i], 0));
  Batch& cap = m.cap[i];
  cap.indices.resize(host.indices.size());
  cap.offsets.resize(host.offsets.size());
  auto copy = [&](Tensor& slot, const Tensor& src) {
    Tensor dst = device_like(slot, src, m.device);
    if (src.nbytes())
      RF_CHECK_CUDA(cudaMemcpyAsync(dst.raw(), src.raw(), src.nbytes(), cudaMemcpyHostToDevice, m.stream));
    return dst;
  };
  Batch view;
  view.labels = copy(cap.labels, host.labels);
  view.dense = copy(cap.dense, host.dense);
  for (size_t f = 0; f < host.indices.size(); ++f) {
    view.indices.push_back(copy(cap.indices[f], host.indices[f]));
    view.offsets.push_back(copy(cap.offsets[f], host.offsets[f]));
  }
  RF_CHECK_CUDA(cudaEventRecord(m.ready[i], m.stream));
  m.dev[i] = std::move(view);
  return m.dev[i];
}

namespace {
// nullptr: the device's compute stream, where recforge's kernels run.
cudaStream_t stream_or_compute(void* stream, int device) {
  return static_cast<cudaStream_t>(stream ? stream : device_compute_stream(device));
}
}  // namespace

void AsyncBatchCopier::wait_ready(void* compute_stream) {
  RF_CHECK_CUDA(cudaStreamWaitEvent(stream_or_compute(compute_stream, impl_->device), impl_->ready[impl_->cur], 0));
}

void AsyncBatchCopier::mark_consumed(void* compute_stream) {
  RF_CHECK_CUDA(cudaEventRecord(impl_->consumed[impl_->cur], stream_or_compute(compute_stream, impl_->device)));
  impl_->consumed_recorded[impl_->cur] = true;
}

void AsyncBatchCopier::synchronize() { RF_CHECK_CUDA(cudaEventSynchronize(impl_->ready[impl_->cur])); }

}  // namespace rf::data
