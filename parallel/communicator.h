// The typed collective interface every backend implements: MpiCommunicator (host tensors) and
// NcclCommunicator (device tensors). The element type always comes from the tensor, never from a byte
// count, and every rank must issue the same collectives in the same order with matching shapes.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "src/core/tensor.h"

namespace rf {

// kAvg is sum / world size, rounded once in the tensor's type for floats (fp16/bf16 are summed in fp32
// pairwise by the MPI backend; NCCL pre-multiplies by 1/n, so NCCL avg is exact only for n a power of
// two). For integer dtypes kAvg truncates toward zero like C++ division.
enum class ReduceOp { kSum, kAvg, kMax };
const char* reduce_op_name(ReduceOp op);

// A pending non-blocking collective. wait() completes it: on the MPI backend the host blocks until
// the data is in place; on NCCL the caller's compute stream is made to wait on the collective (no host
// synchronisation), so kernels enqueued afterwards see the result. test() polls without blocking and
// drives MPI progress (MPI's non-blocking collectives advance only inside MPI calls).
class CommWork {
 public:
  virtual ~CommWork() = default;
  virtual void wait() = 0;
  virtual bool test() = 0;
};

class Communicator {
 public:
  virtual ~Communicator() = default;

  virtual int rank() const = 0;
  virtual int size() const = 0;
  virtual Device device() const = 0;        // where its tensors must live: cpu or cuda:n
  virtual const char* backend() const = 0;  // "mpi", "nccl"

  // In place on every rank.
  virtual void all_reduce(Tensor& t, ReduceOp op) = 0;
  // `t` must stay alive and untouched until the returned work's wait() has returned.
  virtual std::unique_ptr<CommWork> all_reduce_async(Tensor& t, ReduceOp op) = 0;
  // `t` on `root` is copied into `t` on every other rank (same shape everywhere).
  virtual void broadcast(Tensor& t, int root) = 0;
  // out [size * in.numel()] (any shape with that many elements): rank r's `in` at offset r * in.numel().
  virtual void all_gather(const Tensor& in, Tensor& out) = 0;
  // Ranks contribute different element counts: `in` may differ in numel per rank; returns the
  // concatenation in rank order as a 1-D tensor and sets counts[r] to rank r's numel.
  virtual Tensor all_gather_v(const Tensor& in, std::vector<int64_t>* counts = nullptr) = 0;
  // in [size * out.numel()]: out on rank r = reduction over ranks of in[r * out.numel(), ...).
  virtual void reduce_scatter(const Tensor& in, Tensor& out, ReduceOp op) = 0;
  // send_counts[p] elements of `in` (consecutive, in peer order) go to peer p; recv_counts[p] elements
  // of `out` come from peer p. Counts are in elements and must agree pairwise across ranks.
  virtual void all_to_all_v(const Tensor& in, const std::vector<int64_t>& send_counts, Tensor& out,
                            const std::vector<int64_t>& recv_counts) = 0;
  virtual void barrier() = 0;
};

}  // namespace rf
