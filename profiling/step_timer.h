// Per-phase wall-clock accounting for the training step (data wait, forward, backward, optimizer, ...)
// and the summary table printed at the end of a run.
#pragma once

#include <chrono>
#include <string>
#include <vector>

namespace rf {

class PhaseTimers {
 public:
  // Returns the index of a named phase, adding it on first use (order of first use is print order).
  size_t phase(const std::string& name);
  void add(size_t phase, double seconds);
  double seconds(const std::string& name) const;
  double total() const;
  // "phase        seconds   share   ms/step" rows, one per phase, and a total.
  std::string table(int64_t steps) const;

 private:
  std::vector<std::string> names_;
  std::vector<double> seconds_;
};

// Adds the time between construction and destruction to one phase.
class ScopedPhase {
 public:
  ScopedPhase(PhaseTimers& timers, size_t phase)
      : timers_(timers), phase_(phase), start_(std::chrono::steady_clock::now()) {}
  ~ScopedPhase() {
    timers_.add(phase_, std::chrono::duration<double>(std::chrono::steady_clock::now() - start_).count());
  }

 private:
  PhaseTimers& timers_;
  size_t phase_;
  std::chrono::steady_clock::time_point start_;
};

}  // namespace rf
