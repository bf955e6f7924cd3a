// CudaGraph (see cuda_graph.h): stream capture, instantiation and replay; throws BackendError without CUDA.
#include "src/core/cuda_graph.h"

#include <string>

#include "src/core/allocator.h"
#include "src/core/error.h"

#if RECFORGE_WITH_CUDA
#include <cuda_runtime.h>

#include "src/core/cuda_device_guard.h"
#endif

namespace rf {

#if RECFORGE_WITH_CUDA

namespace {
cudaStream_t stream_of(int device) { return static_cast<cudaStream_t>(device_compute_stream(device)); }
}  // namespace

CudaGraph::CudaGraph(int device) : device_(device) {}

CudaGraph::~CudaGraph() { reset(); }

// Runs from the destructor too: nothing here throws, and nothing touches CUDA when there is nothing to free.
void CudaGraph::reset() {
  if (!exec_ && !graph_ && !pool_) return;
  int previous = 0;
  cudaGetDevice(&previous);
  cudaSetDevice(device_);
  if (exec_) {
    // Queued replays must finish before their memory goes back to the cache.
    cudaStreamSynchronize(stream_of(device_));
    cudaGraphExecDestroy(static_cast<cudaGraphExec_t>(exec_));
  }
  if (graph_) cudaGraphDestroy(static_cast<cudaGraph_t>(graph_));
  exec_ = graph_ = nullptr;
  if (pool_) device_pool_release(device_, pool_);
  pool_ = 0;
  cudaSetDevice(previous);
}

void CudaGraph::capture(const char* what, const std::function<void()>& body) {
  reset();
  CudaDeviceGuard guard(device_);
  const cudaStream_t stream = stream_of(device_);
  // Work queued before the capture must not be in flight while the pool takes over freed blocks.
  RF_CHECK_CUDA(cudaStreamSynchronize(stream));
  pool_ = device_pool_create(device_);
  device_pool_route(device_, pool_);
  cudaError_t begin = cudaStreamBeginCapture(stream, cudaStreamCaptureModeThreadLocal);
  if (begin != cudaSuccess) {
    cudaGetLastError();
    device_pool_route(device_, 0);
    reset();
    throw BackendError(std::string(what) + ": cannot start a CUDA graph capture (" + cudaGetErrorString(begin) + ")");
  }
  std::string failure;
  try {
    body();
  } catch (const std::exception& e) {
    failure = e.what();
  }
  cudaGraph_t graph = nullptr;
  const cudaError_t end = cudaStreamEndCapture(stream, &graph);
  device_pool_route(device_, 0);
  graph_ = graph;
  if (failure.empty() && end != cudaSuccess)
    failure = std::string("the capture was invalidated (") + cudaGetErrorString(end) +
              "): some call synchronised or used the legacy default stream";
  cudaGraphExec_t exec = nullptr;
  if (failure.empty()) {
    const cudaError_t inst = cudaGraphInstantiate(&exec, graph, 0);
    if (inst != cudaSuccess) failure = std::string("cudaGraphInstantiate: ") + cudaGetErrorString(inst);
  }
  if (!failure.empty()) {
    cudaGetLastError();  // the capture's error is reported here, not by the next launch
    reset();
    throw BackendError(std::string(what) + ": CUDA graph capture failed: " + failure);
  }
  exec_ = exec;
}

void CudaGraph::replay() {
  RF_CHECK(exec_, "CudaGraph::replay before a successful capture");
  CudaDeviceGuard guard(device_);
  RF_CHECK_CUDA(cudaGraphLaunch(static_cast<cudaGraphExec_t>(exec_), stream_of(device_)));
}

#else

CudaGraph::CudaGraph(int device) : device_(device) {}
CudaGraph::~CudaGraph() = default;
void CudaGraph::reset() {}
void CudaGraph::capture(const char* what, const std::function<void()>&) {
  throw BackendError(std::string(what) + ": CUDA graphs need a recforge built with CUDA (RECFORGE_CUDA=ON)");
}
void CudaGraph::replay() { throw BackendError("CudaGraph::replay: recforge was built without CUDA"); }

#endif

}  // namespace rf
