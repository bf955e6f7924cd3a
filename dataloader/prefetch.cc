// Worker threads and the slot ring of the Prefetcher. One mutex guards the ring; decoding runs outside
// it. A generation counter lets pause() discard batches that were in flight when the epoch changed.
#include "dataloader/prefetch.h"

#include <algorithm>
#include <chrono>
#include <climits>

#include "dataloader/cuda/h2d_copy.h"
#include "src/core/error.h"

namespace rf::data {

BatchBuffer::~BatchBuffer() {
  for (void* p : pinned_) unpin_host_memory(p);
}

Tensor BatchBuffer::reserve(size_t name_id, int64_t numel, int64_t row_width, DType dtype) {
  if (tensors_.size() <= name_id) tensors_.resize(name_id + 1);
  Tensor& t = tensors_[name_id];
  if (!t.defined() || t.dtype() != dtype || t.numel() < numel || (row_width > 0 && t.size(-1) != row_width)) {
    if (t.defined()) {
      for (auto it = pinned_.begin(); it != pinned_.end(); ++it) {
        if (*it == t.raw()) {
          unpin_host_memory(*it);
          pinned_.erase(it);
          break;
        }
      }
    }
    set_iota(name_id, 0);
    // Grow by half again so that slowly growing multi-hot batches do not reallocate every time.
    int64_t cap = std::max<int64_t>(numel + numel / 2, 1);
    if (row_width > 0) {
      cap = (cap + row_width - 1) / row_width;
      t = Tensor::empty({cap, row_width}, dtype);
    } else {
      t = Tensor::empty({cap}, dtype);
    }
    if (pin_ && pin_host_memory(t.raw(), t.nbytes())) pinned_.push_back(t.raw());
  }
  return t;
}

Prefetcher::Prefetcher(ProduceFn produce, int threads, int depth, bool pin)
    : produce_(std::move(produce)), depth_(threads > 0 ? std::max(depth, 3) : 1) {
  RF_CHECK(threads >= 0, "Prefetcher: threads ", threads);
  for (int i = 0; i < depth_; ++i) slots_.push_back(std::make_unique<Slot>(pin));
  for (int i = 0; i < threads; ++i) workers_.emplace_back([this] { work(); });
}

Prefetcher::~Prefetcher() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    stop_ = true;
  }
  cv_work_.notify_all();
  for (std::thread& t : workers_) t.join();
}

void Prefetcher::pause() {
  std::unique_lock<std::mutex> lock(mu_);
  ++generation_;
  end_ = next_claim_ = next_deliver_ = released_ = 0;
  cv_ready_.wait(lock, [&] { return inflight_ == 0; });
  for (auto& s : slots_) {
    s->state = State::kFree;
    s->k = -1;
    s->error = nullptr;
  }
}

void Prefetcher::start(int64_t epoch, int64_t first, int64_t end) {
  pause();
  {
    std::lock_guard<std::mutex> lock(mu_);
    epoch_ = epoch;
    next_claim_ = next_deliver_ = released_ = first;
    end_ = end;
  }
  cv_work_.notify_all();
}

void Prefetcher::work() {
  std::unique_lock<std::mutex> lock(mu_);
  for (;;) {
    cv_work_.wait(lock, [&] { return stop_ || (next_claim_ < end_ && next_claim_ < released_ + depth_); });
    if (stop_) return;
    const int64_t k = next_claim_++;
    const uint64_t gen = generation_;
    const int64_t epoch = epoch_;
    Slot& s = *slots_[static_cast<size_t>(k % depth_)];
    s.state = State::kFilling;
    s.k = k;
    s.error = nullptr;
    ++inflight_;
    lock.unlock();
    bool has = false;
    std::exception_ptr error;
    try {
      has = produce_(epoch, k, s.buf, s.out);
    } catch (...) {
      error = std::current_exception();
    }
    lock.lock();
    --inflight_;
    if (gen == generation_) {
      s.has = has;
      s.error = error;
      s.state = State::kReady;
      // A stream of unknown length ends at the first missing batch: claim nothing after it.
      if (!has && !error && end_ > k) end_ = k + 1;
    } else {
      s.state = State::kFree;
    }
    // The consumer waits for batch next_deliver_ only (and pause() for the last batch in flight): a
    // batch finished out of order wakes nobody, so two workers cost the consumer one wake-up per batch.
    if (k == next_deliver_ || inflight_ == 0 || gen != generation_) cv_ready_.notify_all();
  }
}

bool Prefetcher::next(Batch& out) {
  auto t0 = std::chrono::steady_clock::now();
  if (workers_.empty()) {
    if (next_deliver_ >= end_) return false;
    Slot& s = *slots_[0];
    bool has = produce_(epoch_, next_deliver_, s.buf, s.out);
    wait_seconds_ += std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    if (!has) {
      end_ = next_deliver_;
      return false;
    }
    ++next_deliver_;
    out = std::move(s.out);
    return true;
  }
  std::unique_lock<std::mutex> lock(mu_);
  // The batch before the one returned by the previous call may now be overwritten: the consumer may
  // still hold the previous batch (e.g. its host-to-device copy is in flight).
  released_ = std::max(released_, next_deliver_ - 1);
  cv_work_.notify_all();
  if (next_deliver_ >= end_) return false;
  const int64_t k = next_deliver_;
  Slot& s = *slots_[static_cast<size_t>(k % depth_)];
  cv_ready_.wait(lock, [&] { return s.state == State::kReady && s.k == k; });
  wait_seconds_ += std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  if (s.error) {
    std::exception_ptr e = s.error;
    end_ = k;  // nothing after a failed batch
    std::rethrow_exception(e);
  }
  if (!s.has) {
    end_ = k;
    return false;
  }
  ++next_deliver_;
  out = std::move(s.out);  // one set of handles: a copy would touch every tensor's count again from this core
  return true;
}

}  // namespace rf::data
