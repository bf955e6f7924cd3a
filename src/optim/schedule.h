// Learning-rate schedule: linear warmup, then an optional decay (linear, poly2, cosine, step). It
// returns a multiplier of the base lr so that one schedule scales the dense and the sparse group.
#pragma once

#include <cstdint>
#include <string_view>

namespace rf {

enum class LrDecay { kNone, kLinear, kPoly2, kCosine, kStep };
LrDecay parse_lr_decay(std::string_view name);  // "none" | "linear" | "poly2" | "cosine" | "step"; ConfigError
const char* lr_decay_name(LrDecay d);

// `step` is the trainer's 0-based global step (the update about to be applied).
//   warmup  (step < warmup_steps): w = (step + 1) / warmup_steps, else w = 1.
//           The DLRM reference (LRPolicyScheduler) uses step / warmup_steps counted from 1 and so
//           reaches the same values; its first update runs at lr / warmup_steps as ours does.
//   decay   k = step - decay_start; k < 0: d = 1. Otherwise, with n = decay_steps:
//           linear: d = (n - k) / n            poly2: d = ((n - k) / n)^2   (DLRM reference's decay)
//           cosine: d = (1 + cos(pi * k / n)) / 2
//           (these three stay at their end value 0 for k >= n)
//           step:   d = step_gamma ^ floor(k / n)   (no end)
//   scale = max(w * d, min_scale) once decay has started, w * d before.
// DLRM's reference floors the decayed lr at 1e-7 and then freezes the last lr; set min_scale to
// 1e-7 / base_lr to get its floor.
struct LrSchedule {
  int64_t warmup_steps = 0;
  LrDecay decay = LrDecay::kNone;
  int64_t decay_start = 0;
  int64_t decay_steps = 0;
  double step_gamma = 0.1;
  double min_scale = 0.0;

  void validate() const;  // ConfigError on negative counts or decay with decay_steps <= 0
  double scale(int64_t step) const;
  double lr(double base_lr, int64_t step) const { return base_lr * scale(step); }
};

}  // namespace rf
