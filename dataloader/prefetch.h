// Prefetch workers and a bounded queue of reusable batch buffers. Workers produce batch k of the
// current epoch into slot k % depth; the consumer takes batches in order. A batch stays valid until the
// second call to next() after the one that returned it, so the consumer can hold two: the one it
// trains on and the previous one, whose host-to-device copy may still be in flight (double buffering
// on both sides of the copy). So depth >= 3, and depth - 2 batches are decoded ahead. Buffers are allocated
// once (grown on demand) and page-locked when a CUDA device is present, so host-to-device copies of
// a batch are asynchronous (see dataloader/cuda/h2d_copy.h).
#pragma once

#include <condition_variable>
#include <cstdint>
#include <exception>
#include <functional>
#include <mutex>
#include <thread>
#include <vector>

#include "dataloader/batch.h"
#include "dataloader/sharding.h"

namespace rf::data {

// Reusable host storage for one batch plus per-slot scratch of the producer.
class BatchBuffer {
 public:
  explicit BatchBuffer(bool pin = false) : pin_(pin) {}
  ~BatchBuffer();
  BatchBuffer(const BatchBuffer&) = delete;
  BatchBuffer& operator=(const BatchBuffer&) = delete;

  // A tensor of at least `numel` elements for buffer slot `name_id` (grown, never shrunk); the caller
  // takes a view of the rows it fills. Pinned when pinning was asked for and a device is present.
  Tensor reserve(size_t name_id, int64_t numel, int64_t row_width, DType dtype);

  // How many leading elements of tensor `name_id` are known to hold 0, 1, 2, ... (reset on growth).
  int64_t iota(size_t name_id) const { return name_id < iota_.size() ? iota_[name_id] : 0; }
  void set_iota(size_t name_id, int64_t n) {
    if (iota_.size() <= name_id) iota_.resize(name_id + 1, 0);
    iota_[name_id] = n;
  }

  std::vector<RowRef> rows;     // scratch: the rows of the batch being produced
  EpochOrder::Cursor cursor;    // scratch: the within-block permutation last computed

 private:
  bool pin_;
  std::vector<Tensor> tensors_;
  std::vector<int64_t> iota_;
  std::vector<void*> pinned_;
};

// Fills `out` with batch k of `epoch`, using `buf` for storage; returns false when there is no batch k
// (the end of a stream of unknown length). Called from worker threads, at most one call per buffer at a
// time; with several workers, calls for different k run concurrently.
using ProduceFn = std::function<bool(int64_t epoch, int64_t k, BatchBuffer& buf, Batch& out)>;

class Prefetcher {
 public:
  // threads = 0: next() produces on the caller's thread (no queue). depth >= 3 with threads > 0 (raised).
  Prefetcher(ProduceFn produce, int threads, int depth, bool pin);
  ~Prefetcher();
  Prefetcher(const Prefetcher&) = delete;
  Prefetcher& operator=(const Prefetcher&) = delete;

  // Stops producing and waits for batches in flight (so the caller may change what produce reads).
  void pause();
  // Starts producing batches [first, end) of `epoch` (end = INT64_MAX: until produce returns false).
  void start(int64_t epoch, int64_t first, int64_t end);
  // The next batch in order; false at the end. Rethrows what produce threw for this batch.
  bool next(Batch& out);

  int64_t epoch() const { return epoch_; }
  int64_t next_batch() const { return next_deliver_; }  // batches [first, next_batch) delivered
  double wait_seconds() const { return wait_seconds_; }
  int threads() const { return static_cast<int>(workers_.size()); }

 private:
  enum class State { kFree, kFilling, kReady };
  struct Slot {
    explicit Slot(bool pin) : buf(pin) {}
    BatchBuffer buf;
    Batch out;
    int64_t k = -1;
    State state = State::kFree;
    bool has = false;
    std::exception_ptr error;
  };
  void work();

  ProduceFn produce_;
  int depth_;
  std::vector<std::unique_ptr<Slot>> slots_;
  std::vector<std::thread> workers_;
  std::mutex mu_;
  std::condition_variable cv_work_, cv_ready_;
  bool stop_ = false;
  uint64_t generation_ = 0;
  int inflight_ = 0;
  int64_t epoch_ = 0, next_claim_ = 0, next_deliver_ = 0, released_ = 0, end_ = 0;
  double wait_seconds_ = 0;
};

}  // namespace rf::data
