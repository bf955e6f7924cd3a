// PhaseTimers bookkeeping and its summary table.
#include "profiling/step_timer.h"

#include <cstdio>

namespace rf {

size_t PhaseTimers::phase(const std::string& name) {
  for (size_t i = 0; i < names_.size(); ++i)
    if (names_[i] == name) return i;
  names_.push_back(name);
  seconds_.push_back(0.0);
  return names_.size() - 1;
}

void PhaseTimers::add(size_t phase, double seconds) { seconds_[phase] += seconds; }

double PhaseTimers::seconds(const std::string& name) const {
  for (size_t i = 0; i < names_.size(); ++i)
    if (names_[i] == name) return seconds_[i];
  return 0.0;
}

double PhaseTimers::total() const {
  double t = 0;
  for (double s : seconds_) t += s;
  return t;
}

std::string PhaseTimers::table(int64_t steps) const {
  std::string out;
  char line[160];
  std::snprintf(line, sizeof line, "%-14s %10s %8s %10s\n", "phase", "seconds", "share", "ms/step");
  out += line;
  double total_s = total();
  for (size_t i = 0; i < names_.size(); ++i) {
    std::snprintf(line, sizeof line, "%-14s %10.3f %7.1f%% %10.3f\n", names_[i].c_str(), seconds_[i],
                  total_s > 0 ? 100.0 * seconds_[i] / total_s : 0.0,
                  steps > 0 ? 1e3 * seconds_[i] / static_cast<double>(steps) : 0.0);
    out += line;
  }
  std::snprintf(line, sizeof line, "%-14s %10.3f %7.1f%% %10.3f\n", "total", total_s, 100.0,
                steps > 0 ? 1e3 * total_s / static_cast<double>(steps) : 0.0);
  out += line;
  return out;
}

}  // namespace rf
