// Dynamic loss scaling for fp16 training (bf16 and fp32 need none: construct the scaler disabled).
// The loss is multiplied by scale() before the backward; afterwards unscale_and_update() multiplies every
// gradient by 1 / scale and looks for inf/NaN in the same pass (on the device for CUDA gradients: one
// 4-byte flag comes back to the host), then applies the policy on the host:
//   inf/NaN found: skip this optimizer step, scale *= backoff_factor (not below min_scale), reset the run
//   of good steps; otherwise count a good step and, after growth_interval good steps in a row,
//   scale *= growth_factor (not above max_scale). torch.cuda.amp.GradScaler's policy and defaults.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <type_traits>
#include <vector>

#include "src/core/dtype.h"
#include "src/core/tensor.h"

namespace rf {

struct LossScalerConfig {
  float init_scale = 65536.0f;  // 2^16
  float growth_factor = 2.0f;
  float backoff_factor = 0.5f;
  int growth_interval = 2000;
  float min_scale = 1.0f;
  float max_scale = 16777216.0f;  // 2^24: beyond it fp16 gradients of ordinary size overflow anyway
};

#if RECFORGE_WITH_CUDA
namespace cuda {
// grads on one CUDA device, fp32/fp16/bf16. Multiplies each element by inv_scale (skipped when it is 1)
// and returns whether any element was inf or NaN (before or after scaling). kernels/cuda/loss_scaler.cu.
bool unscale_and_check(const std::vector<Tensor*>& grads, float inv_scale);
}  // namespace cuda
#endif

namespace detail {
template <class T>
bool unscale_and_check_host(T* p, int64_t n, float inv_scale) {
  bool bad = false;
  for (int64_t i = 0; i < n; ++i) {
    float v = 0.0f;
    if constexpr (std::is_same_v<T, float>) v = p[i];
    else v = to_f32(p[i]);
    if (!std::isfinite(v)) bad = true;
    if (inv_scale != 1.0f) {
      v *= inv_scale;
      if constexpr (std::is_same_v<T, float>) p[i] = v;
      else if constexpr (std::is_same_v<T, bf16>) p[i] = to_bf16(v);
      else p[i] = to_f16(v);
    }
  }
  return bad;
}
}  // namespace detail

// Host or CUDA gradients (all on one device); see cuda::unscale_and_check.
inline bool unscale_and_check(const std::vector<Tensor*>& grads, float inv_scale) {
  if (grads.empty()) return false;
#if RECFORGE_WITH_CUDA
  if (grads.front()->device().is_cuda()) return cuda::unscale_and_check(grads, inv_scale);
#endif
  bool bad = false;
  for (Tensor* g : grads) {
    RF_CHECK(g->device().is_cpu(), "unscale_and_check: gradients on different devices");
    switch (g->dtype()) {
      case DType::kF32: bad |= detail::unscale_and_check_host(g->data<float>(), g->numel(), inv_scale); break;
      case DType::kBF16: bad |= detail::unscale_and_check_host(g->data<bf16>(), g->numel(), inv_scale); break;
      case DType::kF16: bad |= detail::unscale_and_check_host(g->data<f16>(), g->numel(), inv_scale); break;
      default: throw ShapeError("unscale_and_check: gradients must be fp32, bf16 or fp16");
    }
  }
  return bad;
}

class DynamicLossScaler {
 public:
  explicit DynamicLossScaler(LossScalerConfig config = {}, bool enabled = true)
      : config_(config), enabled_(enabled), scale_(enabled ? config.init_scale : 1.0f) {
    RF_CHECK(config.growth_factor > 1.0f && config.backoff_factor > 0.0f && config.backoff_factor < 1.0f &&
                 config.growth_interval > 0 && config.min_scale > 0.0f && config.min_scale <= config.max_scale,
             "DynamicLossScaler: invalid configuration");
  }

  bool enabled() const { return enabled_; }
  float scale() const { return scale_; }  // multiply the loss (or its gradient) by this
  int64_t skipped_steps() const { return skipped_; }
  int good_steps_in_a_row() const { return good_; }

  // The policy alone: call with whether this step's gradients held inf/NaN. Returns whether the
  // optimizer step should run.
  bool update(bool found_nonfinite) {
    if (!enabled_) return !found_nonfinite;
    if (found_nonfinite) {
      scale_ = std::max(config_.min_scale, scale_ * config_.backoff_factor);
      good_ = 0;
      ++skipped_;
      return false;
    }
    if (++good_ >= config_.growth_interval) {
      scale_ = std::min(config_.max_scale, scale_ * config_.growth_factor);
      good_ = 0;
    }
    return true;
  }

  // Unscales the gradients in place (by 1 / scale()), checks them, and updates the scale. Returns
  // whether to step. Gradients of a skipped step are left partly unscaled: the caller discards them.
  bool unscale_and_update(const std::vector<Tensor*>& grads) {
    const float inv = enabled_ ? 1.0f / scale_ : 1.0f;
    return update(unscale_and_check(grads, inv));
  }

  // For checkpoints: the state that resumes the policy exactly.
  void restore(float scale, int good_steps, int64_t skipped) {
    scale_ = scale;
    good_ = good_steps;
    skipped_ = skipped;
  }

 private:
  LossScalerConfig config_;
  bool enabled_;
  float scale_;
  int good_ = 0;
  int64_t skipped_ = 0;
};

}  // namespace rf
