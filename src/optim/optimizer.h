// Optimizers over fp32 master weights: dense SGD/Adagrad/Adam/AdamW with torch.optim's exact update
// order and epsilon placement, and sparse SGD/row-wise Adagrad (FBGEMM EXACT_ROWWISE_ADAGRAD) that
// touch only the rows an embedding backward produced. State is fp32 and named for checkpoints.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "src/core/tensor.h"
#include "src/model/parameter.h"

namespace rf {

// Hyperparameters are doubles because torch.optim keeps them as Python floats: scalar arithmetic
// (bias corrections, 1 - lr * wd) happens in double and is rounded to fp32 once, as in PyTorch.
struct OptimizerHyperparams {
  double dense_lr = 0.01;   // the base lrs; a schedule scales both (ParamGroupOptimizer::step)
  double sparse_lr = 0.01;
  double weight_decay = 0.0;         // dense: L2 (SGD, Adagrad, Adam) or decoupled (AdamW)
  double sparse_weight_decay = 0.0;  // sparse: L2 on touched rows only (FBGEMM weight_decay_mode=1)
  double eps = -1.0;                 // < 0: the optimizer's default (Adagrad 1e-10, Adam/AdamW 1e-8,
                                     //      row-wise Adagrad 1e-8 as TorchRec/FBGEMM)
  double sparse_eps = -1.0;          // row-wise Adagrad's eps; < 0: 1e-8 (TorchRec/FBGEMM default)
  double beta1 = 0.9;
  double beta2 = 0.999;
  double initial_accumulator = 0.0;  // Adagrad and row-wise Adagrad
  double lr_decay = 0.0;             // dense Adagrad only: clr = lr / (1 + (t - 1) * lr_decay)
};

class Optimizer {
 public:
  virtual ~Optimizer() = default;
  virtual const char* name() const = 0;
  virtual bool is_sparse() const = 0;  // true: takes Parameter::sparse_grad; false: Parameter::grad

  // Applies one update to every parameter in `params`. `step` is the trainer's 0-based global step
  // (the same number the LR schedule takes); bias corrections use t = step + 1, as torch's
  // state['step'] after its increment. State is created on first sight of a parameter (by name).
  virtual void step(const ParameterList& params, int64_t step, float lr) = 0;

  // Sparse optimizers: the update of an embedding collection's `tables` straight from its backward's
  // inputs (lookups, gradient of the pooled [batch, T * dim] embeddings), the per-row gradient never
  // stored; the result equals the backward's SparseGrads followed by step(). Returns false where there
  // is no such path (the default; the CPU optimizers take the SparseGrads).
  virtual bool fused_embedding_update(const ParameterList& /*tables*/, const std::vector<Tensor>& /*indices*/,
                                      const std::vector<Tensor>& /*offsets*/, const Tensor& /*grad_pooled*/,
                                      PoolMode /*mode*/, float /*lr*/) {
    return false;
  }

  // Allocates state for `params` now (zero, or the initial accumulator), so that a checkpoint can be
  // loaded into state() before the first step.
  virtual void init_state(const ParameterList& params) = 0;

  // CUDA graphs (train.cuda_graph): after set_scalars_on_device(true), step() and
  // fused_embedding_update() queue launches that read the per-step scalars (learning rate, bias
  // corrections) from device memory when they run, and prepare_step() writes those of the step about to
  // run, so a captured step replays with each step's values. The CPU optimizers run nothing that could
  // be captured and ignore both.
  virtual void set_scalars_on_device(bool /*on*/) {}
  virtual void prepare_step(int64_t /*step*/, float /*lr*/) {}

  // Named state tensors for checkpoints: "<kind>/<parameter name>", e.g. "exp_avg/top_mlp.0.weight".
  // The pointers stay valid until the next init_state/step that adds a parameter.
  virtual std::vector<std::pair<std::string, Tensor*>> state() = 0;
};

// Keeps one fp32 state tensor per (kind, parameter) pair, on the parameter's device, in a stable
// order for checkpoints.
class OptimizerState {
 public:
  Tensor& get(const std::string& kind, const Parameter& p, const Shape& shape, float init);
  std::vector<std::pair<std::string, Tensor*>> named();

 private:
  std::map<std::string, Tensor> tensors_;  // key "kind/param"
};

// ---- dense --------------------------------------------------------------------------------------

// torch.optim.SGD(lr, weight_decay) without momentum: g += wd * w; w += -lr * g.
class Sgd : public Optimizer {
 public:
  explicit Sgd(double weight_decay = 0.0) : weight_decay_(weight_decay) {}
  const char* name() const override { return "sgd"; }
  bool is_sparse() const override { return false; }
  void step(const ParameterList& params, int64_t step, float lr) override;
  void init_state(const ParameterList&) override {}
  std::vector<std::pair<std::string, Tensor*>> state() override { return {}; }

 private:
  double weight_decay_;
};

// torch.optim.Adagrad: g += wd * w; clr = lr / (1 + (t-1) * lr_decay); sum += g * g;
// w += -clr * g / (sqrt(sum) + eps).
class Adagrad : public Optimizer {
 public:
  Adagrad(double eps = 1e-10, double initial_accumulator = 0.0, double weight_decay = 0.0, double lr_decay = 0.0)
      : eps_(eps), init_acc_(initial_accumulator), weight_decay_(weight_decay), lr_decay_(lr_decay) {}
  const char* name() const override { return "adagrad"; }
  bool is_sparse() const override { return false; }
  void step(const ParameterList& params, int64_t step, float lr) override;
  void init_state(const ParameterList& params) override;
  std::vector<std::pair<std::string, Tensor*>> state() override { return state_.named(); }

 private:
  double eps_, init_acc_, weight_decay_, lr_decay_;
  OptimizerState state_;
};

// torch.optim.Adam (decoupled == false: L2 added to the gradient) and torch.optim.AdamW
// (decoupled == true: w *= 1 - lr * wd before the moments). Then
//   m = m * b1 + (1 - b1) * g;  v = v * b2 + (1 - b2) * g * g;
//   w += -(lr / (1 - b1^t)) * m / (sqrt(v) / sqrt(1 - b2^t) + eps).
class Adam : public Optimizer {
 public:
  Adam(bool decoupled, double beta1 = 0.9, double beta2 = 0.999, double eps = 1e-8, double weight_decay = 0.0)
      : decoupled_(decoupled), beta1_(beta1), beta2_(beta2), eps_(eps), weight_decay_(weight_decay) {}
  const char* name() const override { return decoupled_ ? "adamw" : "adam"; }
  bool is_sparse() const override { return false; }
  void step(const ParameterList& params, int64_t step, float lr) override;
  void init_state(const ParameterList& params) override;
  std::vector<std::pair<std::string, Tensor*>> state() override { return state_.named(); }

 private:
  bool decoupled_;
  double beta1_, beta2_, eps_, weight_decay_;
  OptimizerState state_;
};

// ---- sparse (embedding tables, Parameter::sparse == true) ---------------------------------------

// FBGEMM EXACT_SGD: for each row r in sparse_grad.rows: w[r] += -lr * g[r]. Other rows untouched.
class SparseSgd : public Optimizer {
 public:
  const char* name() const override { return "sgd"; }
  bool is_sparse() const override { return true; }
  void step(const ParameterList& params, int64_t step, float lr) override;
  void init_state(const ParameterList&) override {}
  std::vector<std::pair<std::string, Tensor*>> state() override { return {}; }
};

// FBGEMM/TorchRec EXACT_ROWWISE_ADAGRAD, one fp32 accumulator per table row ("momentum1"), for each
// touched row r (duplicates already summed by the backward), with wd = sparse_weight_decay:
//   g'      = g[r] + wd * w[r]                           (wd == 0: g' = g[r])
//   acc[r] += sum_d(g'_d^2) / dim
//   m       = lr / (sqrt(acc[r]) + eps)
//   w[r]    = w[r] - m * g'
// Untouched rows keep their weights and accumulators bit for bit.
class RowwiseAdagrad : public Optimizer {
 public:
  RowwiseAdagrad(double eps = 1e-8, double initial_accumulator = 0.0, double weight_decay = 0.0)
      : eps_(eps), init_acc_(initial_accumulator), weight_decay_(weight_decay) {}
  const char* name() const override { return "rowwise_adagrad"; }
  bool is_sparse() const override { return true; }
  void step(const ParameterList& params, int64_t step, float lr) override;
  void init_state(const ParameterList& params) override;
  std::vector<std::pair<std::string, Tensor*>> state() override { return state_.named(); }

 private:
  double eps_, init_acc_, weight_decay_;
  OptimizerState state_;  // "momentum1/<table>" [rows]
};

// One dense and one sparse optimizer with their own base lrs. step() routes each parameter by
// Parameter::sparse.
class ParamGroupOptimizer {
 public:
  ParamGroupOptimizer(std::unique_ptr<Optimizer> dense, std::unique_ptr<Optimizer> sparse, double dense_lr,
                      double sparse_lr);

  // lr = base lr * lr_scale for both groups (lr_scale from LrSchedule::scale).
  void step(const ParameterList& params, int64_t step, double lr_scale = 1.0);
  // Explicit lrs per group.
  void step(const ParameterList& params, int64_t step, float dense_lr, float sparse_lr);

  // The sparse optimizer's fused_embedding_update with lr = sparse lr * lr_scale (as step()).
  bool fused_embedding_update(const ParameterList& tables, const std::vector<Tensor>& indices,
                              const std::vector<Tensor>& offsets, const Tensor& grad_pooled, PoolMode mode,
                              double lr_scale);

  void init_state(const ParameterList& params);
  // Optimizer::set_scalars_on_device / prepare_step for both groups, with the lrs step() would use.
  void set_scalars_on_device(bool on);
  void prepare_step(int64_t step, double lr_scale);
  // "dense.<name>" and "sparse.<name>" prefixed state of both optimizers.
  std::vector<std::pair<std::string, Tensor*>> state();

  Optimizer& dense() { return *dense_; }
  Optimizer& sparse() { return *sparse_; }
  double dense_lr() const { return dense_lr_; }
  double sparse_lr() const { return sparse_lr_; }

 private:
  std::unique_ptr<Optimizer> dense_, sparse_;
  double dense_lr_, sparse_lr_;
};

// dense_name: "sgd" | "adagrad" | "adam" | "adamw"; sparse_name: "sgd" | "rowwise_adagrad"
// ("exact_rowwise_adagrad" is accepted too). Unknown names throw ConfigError listing the choices.
std::unique_ptr<Optimizer> make_dense_optimizer(const std::string& name, const OptimizerHyperparams& hp);
std::unique_ptr<Optimizer> make_sparse_optimizer(const std::string& name, const OptimizerHyperparams& hp);
std::unique_ptr<ParamGroupOptimizer> make_optimizers(const std::string& dense_name, const std::string& sparse_name,
                                                     const OptimizerHyperparams& hp);

}  // namespace rf
