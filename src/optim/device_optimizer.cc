// CUDA optimizers over kernels/optim_fused.h (see device_optimizer.h).
#include "src/optim/device_optimizer.h"

#include <map>

#include "src/core/error.h"

#if RECFORGE_WITH_CUDA
#include "kernels/optim_fused.h"
#endif

namespace rf {

#if RECFORGE_WITH_CUDA
namespace {

void check_device_param(const Parameter& p, const char* op) {
  RF_CHECK(p.value.device().is_cuda(), op, ": parameter '", p.name, "' is on ", p.value.device().str(),
           "; the device optimizers take CUDA parameters");
}

enum class DenseKind { kSgd, kAdagrad, kAdam, kAdamW };

// The per-step scalars of one optimizer's launches in device memory (Optimizer::set_scalars_on_device):
// written by prepare_step() with a copy queued on the compute stream, so a step's launches read the
// values of that step, replayed or not. The array is allocated when switched on (or when the first
// parameter shows its device), never inside a step: a capture would record its allocation's memset.
class DeviceScalars {
 public:
  void set_on(bool on) {
    on_ = on;
    allocate();
  }
  void note_device(Device d) {
    if (!device_.is_cuda()) device_ = d;
    allocate();
  }
  // The device array the launches read; nullptr while the scalars go by value.
  const float* get() const {
    if (!on_) return nullptr;
    RF_CHECK(values_.defined(), "device optimizer: per-step scalars on the device before any parameter was seen");
    return values_.data<float>();
  }
  void write(const std::vector<float>& v) {
    if (!on_) return;
    RF_CHECK(v.size() <= static_cast<size_t>(kMaxStepScalars), "device optimizer: ", v.size(), " step scalars");
    get();
    Tensor host = Tensor::from_vector(v, {static_cast<int64_t>(v.size())});
    values_.slice_rows(0, static_cast<int64_t>(v.size())).copy_from(host);  // staged: `host` may go now
  }

 private:
  void allocate() {
    if (on_ && device_.is_cuda() && !values_.defined())
      values_ = Tensor::zeros({kMaxStepScalars}, DType::kF32, device_);
  }
  bool on_ = false;
  Device device_ = Device::cpu();
  Tensor values_;
};

class DeviceDense : public Optimizer {
 public:
  DeviceDense(DenseKind kind, const OptimizerHyperparams& hp) : kind_(kind), hp_(hp) {}
  const char* name() const override {
    switch (kind_) {
      case DenseKind::kSgd: return "sgd";
      case DenseKind::kAdagrad: return "adagrad";
      case DenseKind::kAdam: return "adam";
      case DenseKind::kAdamW: return "adamw";
    }
    return "?";
  }
  bool is_sparse() const override { return false; }

  void init_state(const ParameterList& params) override {
    for (Parameter* p : params) {
      state_for(*p);
      scalars_.note_device(p->value.device());
    }
  }
  std::vector<std::pair<std::string, Tensor*>> state() override { return state_.named(); }

  void set_scalars_on_device(bool on) override { scalars_.set_on(on); }
  void prepare_step(int64_t step, float lr) override {
    switch (kind_) {
      case DenseKind::kSgd: return scalars_.write(step_scalars(sgd_args(lr)));
      case DenseKind::kAdagrad: return scalars_.write(step_scalars(adagrad_args(step, lr)));
      case DenseKind::kAdam:
      case DenseKind::kAdamW: return scalars_.write(step_scalars(adam_args(step, lr)));
    }
  }

  void step(const ParameterList& params, int64_t step, float lr) override {
    std::vector<Tensor*> w, s1, s2;
    std::vector<const Tensor*> g;
    for (Parameter* p : params) {
      check_device_param(*p, name());
      RF_CHECK(p->grad.defined(), name(), ": parameter '", p->name, "' has no gradient");
      w.push_back(&p->value);
      g.push_back(&p->grad);
      auto [a, b] = state_for(*p);
      if (a) s1.push_back(a);
      if (b) s2.push_back(b);
    }
    if (w.empty()) return;
    scalars_.note_device(w[0]->device());
    switch (kind_) {
      case DenseKind::kSgd: {
        SgdArgs a = sgd_args(lr);
        a.device_scalars = scalars_.get();
        fused_sgd_step(w, g, a);
        break;
      }
      case DenseKind::kAdagrad: {
        AdagradArgs a = adagrad_args(step, lr);
        a.device_scalars = scalars_.get();
        fused_adagrad_step(w, g, s1, a);
        break;
      }
      case DenseKind::kAdam:
      case DenseKind::kAdamW: {
        AdamArgs a = adam_args(step, lr);
        a.device_scalars = scalars_.get();
        fused_adam_step(w, g, s1, s2, a);
        break;
      }
    }
  }

 private:
  SgdArgs sgd_args(float lr) const {
    SgdArgs a;
    a.lr = lr;
    a.weight_decay = hp_.weight_decay;
    return a;
  }
  AdagradArgs adagrad_args(int64_t step, float lr) const {
    AdagradArgs a;
    a.lr = lr;
    a.eps = eps_or(1e-10);
    a.weight_decay = hp_.weight_decay;
    a.lr_decay = hp_.lr_decay;
    a.step = step;
    return a;
  }
  AdamArgs adam_args(int64_t step, float lr) const {
    AdamArgs a;
    a.lr = lr;
    a.beta1 = hp_.beta1;
    a.beta2 = hp_.beta2;
    a.eps = eps_or(1e-8);
    a.weight_decay = hp_.weight_decay;
    a.decoupled = kind_ == DenseKind::kAdamW;
    a.step = step;
    return a;
  }

  double eps_or(double d) const { return hp_.eps < 0.0 ? d : hp_.eps; }
  // The state tensors of one parameter, created as the CPU optimizers create them.
  std::pair<Tensor*, Tensor*> state_for(const Parameter& p) {
    switch (kind_) {
      case DenseKind::kSgd: return {nullptr, nullptr};
      case DenseKind::kAdagrad:
        return {&state_.get("sum", p, p.value.shape(), static_cast<float>(hp_.initial_accumulator)), nullptr};
      case DenseKind::kAdam:
      case DenseKind::kAdamW:
        return {&state_.get("exp_avg", p, p.value.shape(), 0.0f), &state_.get("exp_avg_sq", p, p.value.shape(), 0.0f)};
    }
    return {nullptr, nullptr};
  }

  DenseKind kind_;
  OptimizerHyperparams hp_;
  OptimizerState state_;
  DeviceScalars scalars_;
};

class DeviceSparse : public Optimizer {
 public:
  DeviceSparse(bool rowwise_adagrad, const OptimizerHyperparams& hp) : adagrad_(rowwise_adagrad), hp_(hp) {}
  const char* name() const override { return adagrad_ ? "rowwise_adagrad" : "sgd"; }
  bool is_sparse() const override { return true; }
  void init_state(const ParameterList& params) override {
    for (Parameter* p : params) {
      if (adagrad_) acc(*p);
      scalars_.note_device(p->value.device());
    }
  }
  void set_scalars_on_device(bool on) override { scalars_.set_on(on); }
  void prepare_step(int64_t, float lr) override { scalars_.write({lr}); }
  std::vector<std::pair<std::string, Tensor*>> state() override { return state_.named(); }

  bool fused_embedding_update(const ParameterList& tables, const std::vector<Tensor>& indices,
                              const std::vector<Tensor>& offsets, const Tensor& grad_pooled, PoolMode mode,
                              float lr) override {
    std::vector<Tensor*> values, accs;
    for (Parameter* p : tables) {
      check_device_param(*p, name());
      if (p->full_rows >= 0 && p->sharding != Sharding::kReplicated) return false;  // shards: their own path
      values.push_back(&p->value);
      if (adagrad_) accs.push_back(&acc(*p));
    }
    if (values.empty()) return true;
    scalars_.note_device(values[0]->device());
    if (!adagrad_) {
      embedding_bags_backward_sgd(indices, offsets, grad_pooled, mode, values, lr, scalars_.get());
    } else {
      embedding_bags_backward_rowwise_adagrad(indices, offsets, grad_pooled, mode, values, accs, args(lr));
    }
    return true;
  }

  void step(const ParameterList& params, int64_t, float lr) override {
    for (Parameter* p : params) {
      check_device_param(*p, name());
      Tensor* a = adagrad_ ? &acc(*p) : nullptr;
      if (!p->sparse_grad.rows.defined() || p->sparse_grad.rows.numel() == 0) continue;  // no lookups
      if (!adagrad_) {
        sparse_sgd_update(p->value, p->sparse_grad, lr);
      } else {
        // The sharded tables' exchange of full-row sums (Parameter::full_row_sums) runs on the host.
        RF_CHECK(!p->full_row_sums.defined(), name(), ": table '", p->name,
                 "' is column-sharded; its full-row statistics are host-only");
        sparse_rowwise_adagrad_update(p->value, *a, p->sparse_grad, args(lr));
      }
    }
  }

 private:
  RowwiseAdagradArgs args(float lr) const {
    RowwiseAdagradArgs a;
    a.lr = lr;
    a.eps = static_cast<float>(hp_.sparse_eps < 0.0 ? 1e-8 : hp_.sparse_eps);
    a.weight_decay = static_cast<float>(hp_.sparse_weight_decay);
    a.device_lr = scalars_.get();
    return a;
  }
  Tensor& acc(const Parameter& p) {
    return state_.get("momentum1", p, {p.value.size(0)}, static_cast<float>(hp_.initial_accumulator));
  }
  bool adagrad_;
  OptimizerHyperparams hp_;
  OptimizerState state_;
  DeviceScalars scalars_;
};

}  // namespace

std::unique_ptr<ParamGroupOptimizer> make_device_optimizers(const std::string& dense_name,
                                                            const std::string& sparse_name,
                                                            const OptimizerHyperparams& hp) {
  // The CPU factories validate the names and report the choices the same way.
  make_dense_optimizer(dense_name, hp);
  make_sparse_optimizer(sparse_name, hp);
  DenseKind kind = dense_name == "sgd"       ? DenseKind::kSgd
                   : dense_name == "adagrad" ? DenseKind::kAdagrad
                   : dense_name == "adam"    ? DenseKind::kAdam
                                             : DenseKind::kAdamW;
  return std::make_unique<ParamGroupOptimizer>(std::make_unique<DeviceDense>(kind, hp),
                                               std::make_unique<DeviceSparse>(sparse_name != "sgd", hp),
                                               hp.dense_lr, hp.sparse_lr);
}

#else

std::unique_ptr<ParamGroupOptimizer> make_device_optimizers(const std::string&, const std::string&,
                                                            const OptimizerHyperparams&) {
  throw BackendError("train.device=cuda: recforge was built without CUDA");
}

#endif

}  // namespace rf
