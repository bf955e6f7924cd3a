// One CUDA graph of work recorded from a device's compute stream (src/core/allocator.h), with the
// private memory pool its replays need. The training step uses it (train.cuda_graph): after a warm-up
// step, the whole step (forward, loss, backward, fused embedding update, dense optimizer) is captured
// once and replayed for every later batch of the same shapes, one launch instead of a hundred.
//
// What captured work must satisfy: every launch, memset and copy on the compute stream; no host
// synchronisation and no host read of device memory; no copy from pageable host memory; the same
// host-side decisions on every replay (shapes, pointers, scalars passed by value are recorded as they
// were). Whatever changes per step is written to device memory before replay().
#pragma once

#include <functional>

namespace rf {

class CudaGraph {
 public:
  explicit CudaGraph(int device);
  ~CudaGraph();  // destroys the graph; its pool's memory goes back to the cache
  CudaGraph(const CudaGraph&) = delete;
  CudaGraph& operator=(const CudaGraph&) = delete;

  // Records the work `body` queues on the device's compute stream (none of it runs) and instantiates
  // it; allocations made meanwhile come from the graph's pool. If `body` throws or the capture is
  // invalidated (a synchronising call, the legacy default stream), the capture is ended, nothing is
  // kept and the error is rethrown naming `what`.
  void capture(const char* what, const std::function<void()>& body);
  bool captured() const { return exec_ != nullptr; }
  // Queues one run of the graph on the compute stream (returns without waiting for it).
  void replay();
  int device() const { return device_; }

 private:
  void reset();
  int device_;
  int pool_ = 0;
  void* graph_ = nullptr;  // cudaGraph_t
  void* exec_ = nullptr;   // cudaGraphExec_t
};

}  // namespace rf
