// NcclCommunicator: device-memory collectives on a dedicated stream, bootstrapped over MPI, with a
// watchdog thread that turns asynchronous NCCL errors and collectives that never finish (a dead peer)
// into an aborted communicator and a BackendError instead of a hang. The only file that includes nccl.h.
#include "parallel/nccl_communicator.h"

#include <cstdlib>

#include "src/core/allocator.h"
#include "src/core/error.h"

#if RECFORGE_WITH_CUDA
#include <cuda_runtime.h>
#include <nccl.h>

#include <atomic>
#include <chrono>
#include <climits>
#include <condition_variable>
#include <deque>
#include <mutex>
#include <string>
#include <thread>
#include <unordered_map>

#include "src/core/cuda_device_guard.h"
#include "src/core/precision.h"
#endif

namespace rf {

#if !RECFORGE_WITH_CUDA

bool nccl_available() { return false; }

std::unique_ptr<Communicator> make_nccl_communicator(MPI_Comm, int, NcclOptions) {
  throw BackendError("NCCL communicator: recforge was built without CUDA (RECFORGE_CUDA=OFF)");
}

#else

bool nccl_available() { return cuda_device_count() > 0; }

namespace {

using Clock = std::chrono::steady_clock;

ncclRedOp_t nccl_op(ReduceOp op) {
  switch (op) {
    case ReduceOp::kSum: return ncclSum;
    case ReduceOp::kAvg: return ncclAvg;
    case ReduceOp::kMax: return ncclMax;
  }
  return ncclSum;
}

class NcclCommunicator;

// The collective's completion event; the watchdog watches it until it fires.
struct Pending {
  cudaEvent_t done = nullptr;
  Clock::time_point start;
  const char* what = "";
};

class NcclWork final : public CommWork {
 public:
  NcclWork(NcclCommunicator* comm, cudaEvent_t done, Tensor t) : comm_(comm), done_(done), t_(std::move(t)) {}
  ~NcclWork() override;
  void wait() override;
  bool test() override;

 private:
  NcclCommunicator* comm_;
  cudaEvent_t done_;
  Tensor t_;  // kept alive until the compute stream is ordered after the collective
  bool waited_ = false;
};

class NcclCommunicator final : public Communicator {
 public:
  NcclCommunicator(MPI_Comm bootstrap, int device, NcclOptions options) : device_(device) {
    RF_CHECK(device >= 0 && device < cuda_device_count(), "NCCL communicator: no CUDA device ", device);
    RF_CHECK_MPI(MPI_Comm_rank(bootstrap, &rank_));
    RF_CHECK_MPI(MPI_Comm_size(bootstrap, &size_));
    timeout_s_ = options.timeout_s;
    if (const char* env = std::getenv("RECFORGE_NCCL_TIMEOUT_S")) timeout_s_ = std::atof(env);
    compute_ = static_cast<cudaStream_t>(options.compute_stream ? options.compute_stream : device_compute_stream(device_));
    CudaDeviceGuard guard(device_);
    ncclUniqueId id;
    if (rank_ == 0) RF_CHECK_NCCL(ncclGetUniqueId(&id));
    RF_CHECK_MPI(MPI_Bcast(&id, sizeof(id), MPI_BYTE, 0, bootstrap));
    RF_CHECK_NCCL(ncclCommInitRank(&comm_, size_, id, rank_));
    // Non-blocking: the legacy default stream must not serialise with communication.
    RF_CHECK_CUDA(cudaStreamCreateWithFlags(&stream_, cudaStreamNonBlocking));
    watchdog_ = std::thread([this] { watch(); });
  }

  ~NcclCommunicator() override {
    {
      std::lock_guard<std::mutex> lock(mutex_);
      stop_ = true;
    }
    cv_.notify_all();
    if (watchdog_.joinable()) watchdog_.join();
    cudaSetDevice(device_);
    if (comm_) {
      if (error_.empty()) {
        cudaStreamSynchronize(stream_);
        ncclCommDestroy(comm_);
      } else {
        ncclCommAbort(comm_);
      }
    }
    for (Pending& p : pending_) release(p.done);  // work objects must not outlive their communicator
    cudaStreamDestroy(stream_);
  }

  int rank() const override { return rank_; }
  int size() const override { return size_; }
  Device device() const override { return Device::cuda(device_); }
  const char* backend() const override { return "nccl"; }

  void all_reduce(Tensor& t, ReduceOp op) override {
    check_tensor(t, "all_reduce");
    cudaEvent_t done = launch("all_reduce", [&] {
      RF_CHECK_NCCL(ncclAllReduce(t.raw(), t.raw(), static_cast<size_t>(t.numel()), nccl_type(t.dtype()),
                                  nccl_op(op), comm_, stream_));
    });
    finish(done);
  }

  std::unique_ptr<CommWork> all_reduce_async(Tensor& t, ReduceOp op) override {
    check_tensor(t, "all_reduce_async");
    cudaEvent_t done = launch("all_reduce_async", [&] {
      RF_CHECK_NCCL(ncclAllReduce(t.raw(), t.raw(), static_cast<size_t>(t.numel()), nccl_type(t.dtype()),
                                  nccl_op(op), comm_, stream_));
    });
    return std::make_unique<NcclWork>(this, done, t);
  }

  void broadcast(Tensor& t, int root) override {
    check_tensor(t, "broadcast");
    RF_CHECK(root >= 0 && root < size_, "broadcast: root ", root, " outside a group of ", size_);
    cudaEvent_t done = launch("broadcast", [&] {
      RF_CHECK_NCCL(ncclBroadcast(t.raw(), t.raw(), static_cast<size_t>(t.numel()), nccl_type(t.dtype()), root,
                                  comm_, stream_));
    });
    finish(done);
  }

  void all_gather(const Tensor& in, Tensor& out) override {
    check_tensor(in, "all_gather");
    check_tensor(out, "all_gather");
    RF_CHECK(in.dtype() == out.dtype() && out.numel() == in.numel() * size_, "all_gather: ", in.numel(), " ",
             dtype_name(in.dtype()), " per rank into ", out.numel(), " ", dtype_name(out.dtype()));
    cudaEvent_t done = launch("all_gather", [&] {
      RF_CHECK_NCCL(ncclAllGather(in.raw(), out.raw(), static_cast<size_t>(in.numel()), nccl_type(in.dtype()),
                                  comm_, stream_));
    });
    finish(done);
  }

  Tensor all_gather_v(const Tensor& in, std::vector<int64_t>* counts_out) override {
    check_tensor(in, "all_gather_v");
    Tensor mine = Tensor::from_vector<int64_t>({in.numel()}, {1}).to(device());
    Tensor all = Tensor::empty({size_}, DType::kI64, device());
    all_gather(mine, all);
    std::vector<int64_t> counts = all.to_vector<int64_t>();  // host waits: the sizes decide the layout
    check_error();
    int64_t total = 0;
    for (int64_t c : counts) total += c;
    Tensor out = Tensor::empty({total}, in.dtype(), device());
    size_t esize = dtype_size(in.dtype());
    cudaEvent_t done = launch("all_gather_v", [&] {
      // One broadcast per rank inside a group: NCCL has no all-gather with per-rank counts.
      RF_CHECK_NCCL(ncclGroupStart());
      int64_t off = 0;
      for (int r = 0; r < size_; ++r) {
        int64_t c = counts[static_cast<size_t>(r)];
        char* dst = static_cast<char*>(out.raw()) + off * esize;
        if (c > 0)
          RF_CHECK_NCCL(ncclBroadcast(r == rank_ ? in.raw() : dst, dst, static_cast<size_t>(c), nccl_type(in.dtype()),
                                      r, comm_, stream_));
        off += c;
      }
      RF_CHECK_NCCL(ncclGroupEnd());
    });
    finish(done);
    if (counts_out) *counts_out = std::move(counts);
    return out;
  }

  void reduce_scatter(const Tensor& in, Tensor& out, ReduceOp op) override {
    check_tensor(in, "reduce_scatter");
    check_tensor(out, "reduce_scatter");
    RF_CHECK(in.dtype() == out.dtype() && in.numel() == out.numel() * size_, "reduce_scatter: ", in.numel(), " ",
             dtype_name(in.dtype()), " into ", out.numel(), " per rank");
    cudaEvent_t done = launch("reduce_scatter", [&] {
      RF_CHECK_NCCL(ncclReduceScatter(in.raw(), out.raw(), static_cast<size_t>(out.numel()), nccl_type(in.dtype()),
                                      nccl_op(op), comm_, stream_));
    });
    finish(done);
  }

  void all_to_all_v(const Tensor& in, const std::vector<int64_t>& send_counts, Tensor& out,
                    const std::vector<int64_t>& recv_counts) override {
    check_tensor(in, "all_to_all_v");
    check_tensor(out, "all_to_all_v");
    RF_CHECK(in.dtype() == out.dtype(), "all_to_all_v: ", dtype_name(in.dtype()), " into ", dtype_name(out.dtype()));
    RF_CHECK(send_counts.size() == static_cast<size_t>(size_) && recv_counts.size() == static_cast<size_t>(size_),
             "all_to_all_v: need one count per rank (", size_, ")");
    int64_t st = 0, rt = 0;
    for (int p = 0; p < size_; ++p) st += send_counts[p], rt += recv_counts[p];
    RF_CHECK(st <= in.numel() && rt <= out.numel(), "all_to_all_v: counts exceed the tensors");
    size_t esize = dtype_size(in.dtype());
    cudaEvent_t done = launch("all_to_all_v", [&] {
      RF_CHECK_NCCL(ncclGroupStart());
      int64_t so = 0, ro = 0;
      for (int p = 0; p < size_; ++p) {
        if (send_counts[p] > 0)
          RF_CHECK_NCCL(ncclSend(static_cast<const char*>(in.raw()) + so * esize, static_cast<size_t>(send_counts[p]),
                                 nccl_type(in.dtype()), p, comm_, stream_));
        if (recv_counts[p] > 0)
          RF_CHECK_NCCL(ncclRecv(static_cast<char*>(out.raw()) + ro * esize, static_cast<size_t>(recv_counts[p]),
                                 nccl_type(in.dtype()), p, comm_, stream_));
        so += send_counts[p];
        ro += recv_counts[p];
      }
      RF_CHECK_NCCL(ncclGroupEnd());
    });
    finish(done);
  }

  void barrier() override {
    Tensor one = Tensor::zeros({1}, DType::kI32, device());
    cudaEvent_t done = launch("barrier", [&] {
      RF_CHECK_NCCL(ncclAllReduce(one.raw(), one.raw(), 1, ncclInt32, ncclSum, comm_, stream_));
    });
    host_wait(done);
    drop(done);
  }

  // Throws the watchdog's error, if it found one.
  void check_error() {
    std::lock_guard<std::mutex> lock(mutex_);
    if (!error_.empty()) throw BackendError(error_);
  }

  // Blocks the host until `done` fires, checking the watchdog between polls.
  void host_wait(cudaEvent_t done) {
    for (;;) {
      cudaError_t q = cudaEventQuery(done);
      if (q == cudaSuccess) break;
      if (q != cudaErrorNotReady) RF_CHECK_CUDA(q);
      check_error();
      std::this_thread::sleep_for(std::chrono::microseconds(50));
    }
    check_error();
  }

  // A blocking collective's end: later work on the compute stream waits for it; the caller's
  // reference to the event is released.
  void finish(cudaEvent_t done) {
    try {
      order_compute_after(done);
    } catch (...) {
      drop(done);
      throw;
    }
    drop(done);
  }

  void order_compute_after(cudaEvent_t done) {
    check_error();
    CudaDeviceGuard guard(device_);
    RF_CHECK_CUDA(cudaStreamWaitEvent(compute_, done, 0));
  }

 private:
  void check_tensor(const Tensor& t, const char* what) {
    RF_CHECK(t.defined(), what, ": undefined tensor");
    RF_CHECK(t.device() == device(), what, ": NCCL communicator on ", device().str(), " got a tensor on ",
             t.device().str());
  }

  // Orders the comm stream after work already on the compute stream, enqueues `body` and records a
  // completion event the watchdog tracks. The event carries two references, the watchdog's and the
  // caller's (released with drop(), by finish() or by the work object).
  template <class F>
  cudaEvent_t launch(const char* what, F&& body) {
    check_error();
    CudaDeviceGuard guard(device_);
    cudaEvent_t ready, done;
    RF_CHECK_CUDA(cudaEventCreateWithFlags(&ready, cudaEventDisableTiming));
    RF_CHECK_CUDA(cudaEventRecord(ready, compute_));
    RF_CHECK_CUDA(cudaStreamWaitEvent(stream_, ready, 0));
    cudaEventDestroy(ready);  // destruction is deferred until the event completes
    body();
    RF_CHECK_CUDA(cudaEventCreateWithFlags(&done, cudaEventDisableTiming));
    RF_CHECK_CUDA(cudaEventRecord(done, stream_));
    std::lock_guard<std::mutex> lock(mutex_);
    pending_.push_back({done, Clock::now(), what});
    refs_[done] = 2;
    return done;
  }

  void watch() {
    cudaSetDevice(device_);
    std::unique_lock<std::mutex> lock(mutex_);
    while (!stop_) {
      cv_.wait_for(lock, std::chrono::milliseconds(100));
      if (stop_ || !error_.empty()) continue;
      // Events complete in stream order: drop finished ones from the front.
      while (!pending_.empty() && cudaEventQuery(pending_.front().done) == cudaSuccess) {
        release(pending_.front().done);
        pending_.pop_front();
      }
      ncclResult_t async = ncclSuccess;
      ncclCommGetAsyncError(comm_, &async);
      std::string why;
      if (async != ncclSuccess && async != ncclInProgress)
        why = std::string("asynchronous NCCL error ") + ncclGetErrorString(async);
      else if (!pending_.empty() &&
               std::chrono::duration<double>(Clock::now() - pending_.front().start).count() > timeout_s_)
        why = std::string(pending_.front().what) + " did not complete within " + std::to_string(timeout_s_) +
              " s (a peer died or stopped calling collectives)";
      if (!why.empty()) {
        std::string id = process_identity();
        error_ = "NCCL communicator" + (id.empty() ? std::string() : " (" + id + ")") + ": " + why +
                 "; communicator aborted";
        // Aborting makes NCCL's kernels return, so streams (and a host blocked on them) drain.
        ncclCommAbort(comm_);
        comm_ = nullptr;
      }
    }
  }

  // An event is destroyed once the watchdog is done with it and its work object is gone.
  void release(cudaEvent_t e) {
    if (--refs_[e] == 0) {
      refs_.erase(e);
      cudaEventDestroy(e);
    }
  }

 public:
  void drop(cudaEvent_t e) {
    std::lock_guard<std::mutex> lock(mutex_);
    release(e);
  }

 private:
  int rank_ = 0, size_ = 1, device_ = 0;
  double timeout_s_ = 300.0;
  ncclComm_t comm_ = nullptr;
  cudaStream_t stream_ = nullptr;
  cudaStream_t compute_ = nullptr;
  std::mutex mutex_;
  std::condition_variable cv_;
  std::deque<Pending> pending_;
  std::unordered_map<cudaEvent_t, int> refs_;
  std::string error_;
  bool stop_ = false;
  std::thread watchdog_;
};

NcclWork::~NcclWork() {
  if (!waited_) {
    try { wait(); } catch (...) {}
  }
  comm_->drop(done_);
}

void NcclWork::wait() {
  if (waited_) return;
  waited_ = true;
  comm_->order_compute_after(done_);
}

bool NcclWork::test() {
  comm_->check_error();
  return cudaEventQuery(done_) == cudaSuccess;
}

}  // namespace

std::unique_ptr<Communicator> make_nccl_communicator(MPI_Comm bootstrap, int device, NcclOptions options) {
  return std::make_unique<NcclCommunicator>(bootstrap, device, options);
}

#endif  // RECFORGE_WITH_CUDA

}  // namespace rf
