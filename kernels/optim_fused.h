// Fused optimizer kernels for CUDA tensors (kernels/cuda/optim.cu); device-only: every tensor must live
// on one CUDA device, and the declarations exist only in builds with RECFORGE_WITH_CUDA (the CPU
// optimizers are src/optim). The arithmetic is src/optim/optimizer.h's, in the same order and with the
// same explicit FMAs, so a CUDA step matches the CPU step to the last bit or two.
//
// Sparse (embedding tables, fp32/fp16/bf16 storage, update math in fp32, rounded to nearest even on
// store): SGD and FBGEMM EXACT_ROWWISE_ADAGRAD applied to the rows a backward touched, either from a
// SparseGrad or fused with the embedding backward so the per-row gradient never reaches memory.
// Dense (fp32 master weights): multi-tensor Adam/AdamW and Adagrad, many parameters per launch.
#pragma once

#if RECFORGE_WITH_CUDA

#include <cstdint>
#include <vector>

#include "kernels/embedding_bag.h"
#include "src/core/tensor.h"

namespace rf {

// ---- sparse ----------------------------------------------------------------------------------------
// Row-wise Adagrad hyper-parameters (RowwiseAdagrad in src/optim/optimizer.h).
struct RowwiseAdagradArgs {
  float lr = 0.01f;
  float eps = 1e-8f;
  float weight_decay = 0.0f;  // L2 on touched rows (FBGEMM weight_decay_mode 1)
  // When set, the kernels read the learning rate from this device float when they run instead of `lr`
  // (a CUDA graph replays them with the rate of each step; see DeviceScalars in src/optim).
  const float* device_lr = nullptr;
};

// table [rows, dim]; grad from embedding_bag_backward (rows unique). w[r] += -lr * g.
void sparse_sgd_update(Tensor& table, const SparseGrad& grad, float lr);
// acc [rows] fp32 (the "momentum1" state).
void sparse_rowwise_adagrad_update(Tensor& table, Tensor& acc, const SparseGrad& grad, const RowwiseAdagradArgs& args);

// embedding_bag_backward and the update in one pass over the sorted lookups: each touched row's
// gradient is reduced in registers (same fixed order as the backward) and applied at once.
void embedding_bag_backward_sgd(const Tensor& indices, const Tensor& offsets, const Tensor& grad_out, PoolMode mode,
                                Tensor& table, float lr);
void embedding_bag_backward_rowwise_adagrad(const Tensor& indices, const Tensor& offsets, const Tensor& grad_out,
                                            PoolMode mode, Tensor& table, Tensor& acc,
                                            const RowwiseAdagradArgs& args);
// The same for the tables of an embedding collection (kernels/embedding_bag.h's embedding_bags_*:
// grad_out [batch, T * dim], table t's gradient in columns [t * dim, (t + 1) * dim)): one sort of every
// table's lookups, one synchronisation, one update launch per 32 tables. Tables one dtype and dim.
void embedding_bags_backward_sgd(const std::vector<Tensor>& indices, const std::vector<Tensor>& offsets,
                                 const Tensor& grad_out, PoolMode mode, const std::vector<Tensor*>& tables, float lr,
                                 const float* device_lr = nullptr);  // as RowwiseAdagradArgs::device_lr
void embedding_bags_backward_rowwise_adagrad(const std::vector<Tensor>& indices, const std::vector<Tensor>& offsets,
                                             const Tensor& grad_out, PoolMode mode, const std::vector<Tensor*>& tables,
                                             const std::vector<Tensor*>& accs, const RowwiseAdagradArgs& args);

// ---- dense, multi-tensor ------------------------------------------------------------------------------
// torch.optim.Adam / AdamW (decoupled) as src/optim's Adam. `step` is the 0-based global step (bias
// corrections use t = step + 1). `grad_scale` multiplies every gradient first (1 / loss scale for fp16
// training, so no separate unscale pass is needed).
struct AdamArgs {
  float lr = 1e-3f;
  double beta1 = 0.9, beta2 = 0.999, eps = 1e-8, weight_decay = 0.0;
  bool decoupled = false;
  int64_t step = 0;
  float grad_scale = 1.0f;
  // When set, the kernels read the per-step scalars (those that change with `step` and `lr`) from this
  // device array when they run: step_scalars(args) of the step being run, written before each replay
  // of a CUDA graph that recorded the launch. Unset: they are computed now and passed by value.
  const float* device_scalars = nullptr;
};
// params, grads, exp_avg, exp_avg_sq: equal-length lists of fp32 tensors, element counts matching per
// index. One launch per 48 tensors.
void fused_adam_step(const std::vector<Tensor*>& params, const std::vector<const Tensor*>& grads,
                     const std::vector<Tensor*>& exp_avg, const std::vector<Tensor*>& exp_avg_sq,
                     const AdamArgs& args);

// torch.optim.SGD without momentum as src/optim's Sgd: g' = g * grad_scale (+ wd * w); w += -lr * g'.
struct SgdArgs {
  float lr = 0.01f;
  double weight_decay = 0.0;
  float grad_scale = 1.0f;
  const float* device_scalars = nullptr;  // as AdamArgs::device_scalars
};
void fused_sgd_step(const std::vector<Tensor*>& params, const std::vector<const Tensor*>& grads, const SgdArgs& args);

// torch.optim.Adagrad as src/optim's Adagrad.
struct AdagradArgs {
  float lr = 0.01f;
  double eps = 1e-10, weight_decay = 0.0, lr_decay = 0.0;
  int64_t step = 0;
  float grad_scale = 1.0f;
  const float* device_scalars = nullptr;  // as AdamArgs::device_scalars
};
void fused_adagrad_step(const std::vector<Tensor*>& params, const std::vector<const Tensor*>& grads,
                        const std::vector<Tensor*>& sums, const AdagradArgs& args);

// The per-step scalars a launch with `device_scalars` set reads, in order (at most kMaxStepScalars):
// Adam {-(lr / (1 - b1^t)), sqrt(1 - b2^t), 1 - lr * wd}; SGD {-lr}; Adagrad {-lr / (1 + (t - 1) lr_decay)}.
// The same fp32 values the by-value launch computes, so both give the same bits.
constexpr int kMaxStepScalars = 4;
std::vector<float> step_scalars(const AdamArgs& args);
std::vector<float> step_scalars(const SgdArgs& args);
std::vector<float> step_scalars(const AdagradArgs& args);

}  // namespace rf

#endif  // RECFORGE_WITH_CUDA
