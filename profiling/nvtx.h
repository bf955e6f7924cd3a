// NVTX ranges for Nsight Systems: name the phases of a training step (data wait, forward, backward,
// gradient sync, optimizer) on the timeline. Off unless `[profiling] nvtx=true` sets them on (the trainer
// calls nvtx::set_enabled); compiled to no-ops in builds without CUDA. A disabled range costs one
// relaxed atomic load.
#pragma once

namespace rf::nvtx {

void set_enabled(bool on);
bool enabled();

// Pushes a named range on construction and pops it on destruction (when enabled at construction).
class Range {
 public:
  explicit Range(const char* name);
  ~Range();
  Range(const Range&) = delete;
  Range& operator=(const Range&) = delete;

 private:
  bool pushed_ = false;
};

// Marks an instant event (an overflow skip, a checkpoint) when enabled.
void mark(const char* name);

}  // namespace rf::nvtx

#define RF_NVTX_CONCAT_(a, b) a##b
#define RF_NVTX_CONCAT(a, b) RF_NVTX_CONCAT_(a, b)
// RF_NVTX_RANGE("forward"); opens a range that closes at the end of the enclosing scope.
#define RF_NVTX_RANGE(name) ::rf::nvtx::Range RF_NVTX_CONCAT(rf_nvtx_range_, __LINE__)(name)
