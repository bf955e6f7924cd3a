// LR schedule arithmetic (see schedule.h for the formulas and how they relate to the DLRM reference).
#include "src/optim/schedule.h"

#include <algorithm>
#include <cmath>
#include <numbers>
#include <string>

#include "src/core/error.h"

namespace rf {

LrDecay parse_lr_decay(std::string_view name) {
  if (name == "none") return LrDecay::kNone;
  if (name == "linear") return LrDecay::kLinear;
  if (name == "poly2") return LrDecay::kPoly2;
  if (name == "cosine") return LrDecay::kCosine;
  if (name == "step") return LrDecay::kStep;
  throw ConfigError("unknown lr decay '" + std::string(name) + "' (choose none, linear, poly2, cosine or step)");
}

const char* lr_decay_name(LrDecay d) {
  switch (d) {
    case LrDecay::kNone: return "none";
    case LrDecay::kLinear: return "linear";
    case LrDecay::kPoly2: return "poly2";
    case LrDecay::kCosine: return "cosine";
    case LrDecay::kStep: return "step";
  }
  return "?";
}

void LrSchedule::validate() const {
  if (warmup_steps < 0) throw ConfigError("lr schedule: warmup_steps must be >= 0, got " + std::to_string(warmup_steps));
  if (decay_start < 0) throw ConfigError("lr schedule: decay_start must be >= 0, got " + std::to_string(decay_start));
  if (decay != LrDecay::kNone && decay_steps <= 0)
    throw ConfigError(std::string("lr schedule: decay '") + lr_decay_name(decay) + "' needs decay_steps > 0, got " +
                      std::to_string(decay_steps));
  if (min_scale < 0.0) throw ConfigError("lr schedule: min_scale must be >= 0");
}

double LrSchedule::scale(int64_t step) const {
  double w = 1.0;
  if (step < warmup_steps) w = static_cast<double>(step + 1) / static_cast<double>(warmup_steps);
  if (decay == LrDecay::kNone || step < decay_start) return w;
  const double k = static_cast<double>(step - decay_start);
  const double n = static_cast<double>(decay_steps);
  const double left = std::max(0.0, (n - k) / n);
  double d = 1.0;
  switch (decay) {
    case LrDecay::kNone: break;
    case LrDecay::kLinear: d = left; break;
    case LrDecay::kPoly2: d = left * left; break;
    case LrDecay::kCosine: d = k >= n ? 0.0 : 0.5 * (1.0 + std::cos(std::numbers::pi * k / n)); break;
    case LrDecay::kStep: d = std::pow(step_gamma, std::floor(k / n)); break;
  }
  return std::max(w * d, min_scale);
}

}  // namespace rf
