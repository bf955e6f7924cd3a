// Data-parallel gradient synchronisation: dense gradients packed into flat buckets and averaged with
// non-blocking all-reduces that overlap the rest of the backward, parameters broadcast from one rank
// at start, sparse embedding gradients merged exactly across ranks, and metrics gathered for an exact
// global AUC.
#pragma once

#include <cstddef>
#include <memory>
#include <vector>

#include "parallel/communicator.h"
#include "src/metrics/binary_metrics.h"
#include "src/model/parameter.h"

namespace rf {

inline constexpr double kDefaultBucketMb = 25.0;

// Buckets are filled in reverse registration order (the order the backward produces gradients), each
// up to bucket_mb MiB of gradient bytes; a parameter larger than that gets a bucket of its own. A
// bucket holds one dtype. Per step:
//   for each layer, last to first: layer.backward(...); buckets.mark_ready(p) for each of its params
//   buckets.finish();   // every p->grad now holds the average over the ranks of the communicator
//   optimizer.step(...)
// mark_ready copies p->grad into its bucket; when a bucket's last parameter is marked, its all-reduce
// starts (MPI_Iallreduce for host tensors; NCCL on the communicator's stream, ordered after the
// compute stream by an event, for device tensors). Buckets are launched strictly in bucket order, so
// every rank issues the same collectives in the same order whatever order mark_ready sees. finish()
// packs any parameter not marked this step (so calling only finish() is the "no overlap" mode), waits
// for every bucket and copies the averages back into p->grad. With a communicator of size 1 both are
// no-ops. The parameters' grad tensors must keep their shape, dtype and device from step to step.
class GradientBuckets {
 public:
  // `params`: the dense parameters to synchronise, in registration order (sparse ones are skipped:
  // use sync_sparse_grads). Their grad tensors must exist (zeros are fine) when this is built.
  GradientBuckets(Communicator& comm, const ParameterList& params, double bucket_mb = kDefaultBucketMb);
  ~GradientBuckets();
  GradientBuckets(const GradientBuckets&) = delete;
  GradientBuckets& operator=(const GradientBuckets&) = delete;

  void mark_ready(const Parameter* p);  // throws for a parameter it does not hold or marked twice
  void finish();

  size_t num_buckets() const { return buckets_.size(); }
  // Parameters (indices into the constructor's list) of bucket b, in packing order.
  std::vector<size_t> bucket_params(size_t b) const;
  size_t bucket_bytes(size_t b) const;

 private:
  struct Slot {
    Parameter* param;
    size_t index;    // in the constructor's list
    size_t bucket;
    int64_t offset;  // elements into the bucket
  };
  struct Bucket {
    Tensor flat;  // [elements] of one dtype, on the communicator's device
    std::vector<size_t> slots;
    size_t ready = 0;
    std::unique_ptr<CommWork> work;
  };
  void pack(Slot& s);
  void launch_ready_buckets();

  Communicator& comm_;
  std::vector<Slot> slots_;
  std::vector<Bucket> buckets_;
  std::vector<bool> marked_;  // per slot, this step
  size_t next_launch_ = 0;
};

// Copies every parameter's value on `root` to all ranks (call once after the model is built, so that
// every replica starts from the same weights whatever its seed).
void broadcast_parameters(Communicator& comm, const ParameterList& params, int root = 0);

// A replicated embedding table's sparse gradient, combined across ranks: every rank ends with the
// same sorted unique rows and, for each, the sum of every rank's gradient for that row divided by
// the number of ranks (the average, like the dense gradients). Partial sums are added in rank order,
// so every rank computes bit-identical values. The result lives where p.sparse_grad did (host when
// it was undefined/empty); merging is done on the host.
void sync_sparse_grads(Communicator& comm, Parameter& p);

// Replaces `m` on every rank by the metrics over every rank's samples (concatenated in rank order),
// so auc(), logloss() and accuracy() are those of the whole evaluation set, exactly.
void gather_metrics(Communicator& comm, BinaryMetrics& m);

}  // namespace rf
