// CPU implementations of the optimizers in optimizer.h. Each elementwise expression is written the way
// torch's vectorised CPU kernels evaluate it, with the scalar rounded to fp32 first: add(b, alpha) is
// fma(alpha, b, a), addcmul(b, c, value) is fma(value * b, c, a), addcdiv(b, c, value) is
// a + (value * b) / c. With FMA hardware the dense trajectories then match torch.optim bit for bit.
#include "src/optim/optimizer.h"

#include <cmath>

#include "src/core/error.h"

namespace rf {
namespace {

// Elementwise loops run in parallel only when the tensor is big enough to pay for the fork.
constexpr int64_t kParallelNumel = 1 << 15;
constexpr int64_t kParallelRows = 256;

// a * b + c rounded once where the target has FMA (torch's AVX2/AVX-512 kernels use it); elsewhere
// std::fma would be a slow library call, so fall back to two roundings (within the parity tolerance).
inline float fmadd(float a, float b, float c) {
#if defined(__FMA__) || defined(__aarch64__)
  return std::fma(a, b, c);
#else
  return a * b + c;
#endif
}

void check_cpu_fp32(const Tensor& t, const Parameter& p, const char* what) {
  RF_CHECK(t.defined(), "optimizer: parameter '", p.name, "' has no ", what);
  RF_CHECK(t.device().is_cpu(), "optimizer: parameter '", p.name, "' ", what,
           " is on ", t.device().str(), "; only the CPU optimizers exist so far");
  check_dtype(t, DType::kF32, what);
}

void check_dense(const Parameter& p, const char* opt) {
  RF_CHECK(!p.sparse, opt, ": parameter '", p.name, "' is sparse (an embedding table); give it to the sparse optimizer");
  check_cpu_fp32(p.value, p, "value");
  check_cpu_fp32(p.grad, p, "grad");
  RF_CHECK(p.grad.numel() == p.value.numel(), opt, ": parameter '", p.name, "' grad ", shape_str(p.grad.shape()),
           " does not match value ", shape_str(p.value.shape()));
}

// Returns dim after checking the sparse gradient against the table.
int64_t check_sparse(const Parameter& p, const char* opt) {
  RF_CHECK(p.sparse, opt, ": parameter '", p.name, "' is dense; give it to the dense optimizer");
  check_cpu_fp32(p.value, p, "value");
  RF_CHECK(p.value.dim() == 2, opt, ": table '", p.name, "' must be [rows, dim], is ", shape_str(p.value.shape()));
  const int64_t dim = p.value.size(1);
  if (!p.sparse_grad.rows.defined()) return dim;  // no lookups this step
  check_dtype(p.sparse_grad.rows, DType::kI64, "sparse_grad.rows");
  check_cpu_fp32(p.sparse_grad.values, p, "sparse_grad.values");
  const int64_t u = p.sparse_grad.rows.numel();
  check_shape(p.sparse_grad.values, {u, dim}, "sparse_grad.values");
  return dim;
}

}  // namespace

Tensor& OptimizerState::get(const std::string& kind, const Parameter& p, const Shape& shape, float init) {
  const std::string key = kind + "/" + p.name;
  auto it = tensors_.find(key);
  if (it != tensors_.end()) {
    RF_CHECK(it->second.shape() == shape, "optimizer state '", key, "' is ", shape_str(it->second.shape()),
             ", parameter needs ", shape_str(shape));
    return it->second;
  }
  // Initial values are written on the host and copied to the parameter's device, so device state
  // starts equal to the CPU optimizers' bit for bit.
  Tensor t = Tensor::empty(shape, DType::kF32);
  float* d = t.data<float>();
  for (int64_t i = 0; i < t.numel(); ++i) d[i] = init;
  return tensors_.emplace(key, p.value.device().is_cpu() ? std::move(t) : t.to(p.value.device())).first->second;
}

std::vector<std::pair<std::string, Tensor*>> OptimizerState::named() {
  std::vector<std::pair<std::string, Tensor*>> out;
  for (auto& [k, t] : tensors_) out.emplace_back(k, &t);
  return out;
}

// ---- SGD ----------------------------------------------------------------------------------------

void Sgd::step(const ParameterList& params, int64_t, float lr) {
  const float wd = static_cast<float>(weight_decay_);
  const float neg_lr = -lr;
  for (Parameter* p : params) {
    check_dense(*p, "sgd");
    float* w = p->value.data<float>();
    const float* g = p->grad.data<float>();
    const int64_t n = p->value.numel();
    const bool decay = weight_decay_ != 0.0;
#pragma omp parallel for if (n >= kParallelNumel) schedule(static)
    for (int64_t i = 0; i < n; ++i) {
      float gi = decay ? fmadd(wd, w[i], g[i]) : g[i];
      w[i] = fmadd(neg_lr, gi, w[i]);
    }
  }
}

// ---- Adagrad ------------------------------------------------------------------------------------

void Adagrad::init_state(const ParameterList& params) {
  for (Parameter* p : params) state_.get("sum", *p, p->value.shape(), static_cast<float>(init_acc_));
}

void Adagrad::step(const ParameterList& params, int64_t step, float lr) {
  const double t = static_cast<double>(step + 1);
  const float clr_neg = static_cast<float>(-(static_cast<double>(lr) / (1.0 + (t - 1.0) * lr_decay_)));
  const float wd = static_cast<float>(weight_decay_);
  const float eps = static_cast<float>(eps_);
  const bool decay = weight_decay_ != 0.0;
  for (Parameter* p : params) {
    check_dense(*p, "adagrad");
    float* w = p->value.data<float>();
    const float* g = p->grad.data<float>();
    float* sum = state_.get("sum", *p, p->value.shape(), static_cast<float>(init_acc_)).data<float>();
    const int64_t n = p->value.numel();
#pragma omp parallel for if (n >= kParallelNumel) schedule(static)
    for (int64_t i = 0; i < n; ++i) {
      float gi = decay ? fmadd(wd, w[i], g[i]) : g[i];
      float s = fmadd(gi, gi, sum[i]);
      sum[i] = s;
      float std_ = std::sqrt(s) + eps;
      w[i] = w[i] + (clr_neg * gi) / std_;
    }
  }
}

// ---- Adam / AdamW -------------------------------------------------------------------------------

void Adam::init_state(const ParameterList& params) {
  for (Parameter* p : params) {
    state_.get("exp_avg", *p, p->value.shape(), 0.0f);
    state_.get("exp_avg_sq", *p, p->value.shape(), 0.0f);
  }
}

void Adam::step(const ParameterList& params, int64_t step, float lr) {
  const double t = static_cast<double>(step + 1);
  const double lr_d = static_cast<double>(lr);
  const double bias_correction1 = 1.0 - std::pow(beta1_, t);
  const double bias_correction2 = 1.0 - std::pow(beta2_, t);
  const float neg_step_size = static_cast<float>(-(lr_d / bias_correction1));
  const float bc2_sqrt = static_cast<float>(std::sqrt(bias_correction2));
  const float b1 = static_cast<float>(beta1_), one_minus_b1 = static_cast<float>(1.0 - beta1_);
  const float b2 = static_cast<float>(beta2_), one_minus_b2 = static_cast<float>(1.0 - beta2_);
  const float eps = static_cast<float>(eps_);
  const float wd = static_cast<float>(weight_decay_);
  const float decay_factor = static_cast<float>(1.0 - lr_d * weight_decay_);  // AdamW
  const bool l2 = !decoupled_ && weight_decay_ != 0.0;
  const bool decoupled = decoupled_ && weight_decay_ != 0.0;
  for (Parameter* p : params) {
    check_dense(*p, name());
    float* w = p->value.data<float>();
    const float* g = p->grad.data<float>();
    float* m = state_.get("exp_avg", *p, p->value.shape(), 0.0f).data<float>();
    float* v = state_.get("exp_avg_sq", *p, p->value.shape(), 0.0f).data<float>();
    const int64_t n = p->value.numel();
#pragma omp parallel for if (n >= kParallelNumel) schedule(static)
    for (int64_t i = 0; i < n; ++i) {
      float wi = w[i];
      float gi = g[i];
      if (l2) gi = fmadd(wd, wi, gi);
      if (decoupled) wi = wi * decay_factor;
      float mi = fmadd(one_minus_b1, gi, m[i] * b1);
      float vi = fmadd(one_minus_b2 * gi, gi, v[i] * b2);
      m[i] = mi;
      v[i] = vi;
      float denom = std::sqrt(vi) / bc2_sqrt + eps;
      w[i] = wi + (neg_step_size * mi) / denom;
    }
  }
}

// ---- sparse -------------------------------------------------------------------------------------

void SparseSgd::step(const ParameterList& params, int64_t, float lr) {
  const float neg_lr = -lr;
  for (Parameter* p : params) {
    const int64_t dim = check_sparse(*p, "sparse sgd");
    if (!p->sparse_grad.rows.defined()) continue;
    float* w = p->value.data<float>();
    const int64_t rows = p->value.size(0);
    const int64_t* r = p->sparse_grad.rows.data<int64_t>();
    const float* g = p->sparse_grad.values.data<float>();
    const int64_t u = p->sparse_grad.rows.numel();
    for (int64_t k = 0; k < u; ++k)
      RF_CHECK(r[k] >= 0 && r[k] < rows, "sparse sgd: table '", p->name, "': row ", r[k], " outside [0, ", rows, ")");
    // Rows are unique, so threads never write the same row.
#pragma omp parallel for if (u >= kParallelRows) schedule(static)
    for (int64_t k = 0; k < u; ++k) {
      float* wr = w + r[k] * dim;
      const float* gr = g + k * dim;
      for (int64_t d = 0; d < dim; ++d) wr[d] = fmadd(neg_lr, gr[d], wr[d]);
    }
  }
}

void RowwiseAdagrad::init_state(const ParameterList& params) {
  for (Parameter* p : params) state_.get("momentum1", *p, {p->value.size(0)}, static_cast<float>(init_acc_));
}

void RowwiseAdagrad::step(const ParameterList& params, int64_t, float lr) {
  const float eps = static_cast<float>(eps_);
  const float wd = static_cast<float>(weight_decay_);
  const bool decay = weight_decay_ != 0.0;
  for (Parameter* p : params) {
    const int64_t dim = check_sparse(*p, "rowwise_adagrad");
    const int64_t rows = p->value.size(0);
    float* acc = state_.get("momentum1", *p, {rows}, static_cast<float>(init_acc_)).data<float>();
    if (!p->sparse_grad.rows.defined()) continue;
    float* w = p->value.data<float>();
    const int64_t* r = p->sparse_grad.rows.data<int64_t>();
    const float* g = p->sparse_grad.values.data<float>();
    const int64_t u = p->sparse_grad.rows.numel();
    for (int64_t k = 0; k < u; ++k)
      RF_CHECK(r[k] >= 0 && r[k] < rows, "rowwise_adagrad: table '", p->name, "': row ", r[k], " outside [0, ",
               rows, ")");
    // A column shard takes the row's statistics over the full width (Parameter::full_row_sums):
    // sum (g + wd w)^2 = sum g^2 + 2 wd sum g w + wd^2 sum w^2, divided by the full dimension.
    const float* full = nullptr;
    int64_t mean_dim = dim;
    if (p->full_row_sums.defined()) {
      RF_CHECK(p->sharding == Sharding::kColumnSharded && p->full_row_sums.shape() == (Shape{u, 3}) && p->full_cols > 0,
               "rowwise_adagrad: table '", p->name, "': full-row sums ", shape_str(p->full_row_sums.shape()), " for ",
               u, " rows");
      full = p->full_row_sums.data<float>();
      mean_dim = p->full_cols;
    }
#pragma omp parallel for if (u >= kParallelRows) schedule(static)
    for (int64_t k = 0; k < u; ++k) {
      float* wr = w + r[k] * dim;
      const float* gr = g + k * dim;
      float sum_sq = 0.0f;
      if (full) {
        const float* f = full + 3 * k;
        sum_sq = decay ? f[0] + 2.0f * wd * f[1] + wd * wd * f[2] : f[0];
      } else {
        for (int64_t d = 0; d < dim; ++d) {
          float gx = decay ? gr[d] + wd * wr[d] : gr[d];
          sum_sq += gx * gx;
        }
      }
      // FBGEMM divides the row's sum of squares by D (not a multiply by 1/D).
      float new_acc = acc[r[k]] + sum_sq / static_cast<float>(mean_dim);
      acc[r[k]] = new_acc;
      float multiplier = lr / (std::sqrt(new_acc) + eps);
      // FBGEMM weight_decay_mode 1 (L2): w = (1 - m * wd) * w - m * g, which is w - m * (g + wd * w).
      float correction = decay ? 1.0f - multiplier * wd : 1.0f;
      for (int64_t d = 0; d < dim; ++d) wr[d] = correction * wr[d] - multiplier * gr[d];
    }
  }
}

// ---- groups and factory -------------------------------------------------------------------------

ParamGroupOptimizer::ParamGroupOptimizer(std::unique_ptr<Optimizer> dense, std::unique_ptr<Optimizer> sparse,
                                         double dense_lr, double sparse_lr)
    : dense_(std::move(dense)), sparse_(std::move(sparse)), dense_lr_(dense_lr), sparse_lr_(sparse_lr) {
  RF_CHECK(dense_ && !dense_->is_sparse(), "ParamGroupOptimizer: first optimizer must be dense");
  RF_CHECK(sparse_ && sparse_->is_sparse(), "ParamGroupOptimizer: second optimizer must be sparse");
}

namespace {
void split(const ParameterList& params, ParameterList& dense, ParameterList& sparse) {
  for (Parameter* p : params) (p->sparse ? sparse : dense).push_back(p);
}
}  // namespace

bool ParamGroupOptimizer::fused_embedding_update(const ParameterList& tables, const std::vector<Tensor>& indices,
                                                 const std::vector<Tensor>& offsets, const Tensor& grad_pooled,
                                                 PoolMode mode, double lr_scale) {
  return sparse_->fused_embedding_update(tables, indices, offsets, grad_pooled, mode,
                                         static_cast<float>(sparse_lr_ * lr_scale));
}

void ParamGroupOptimizer::step(const ParameterList& params, int64_t step, double lr_scale) {
  this->step(params, step, static_cast<float>(dense_lr_ * lr_scale), static_cast<float>(sparse_lr_ * lr_scale));
}

void ParamGroupOptimizer::step(const ParameterList& params, int64_t step, float dense_lr, float sparse_lr) {
  ParameterList dense, sparse;
  split(params, dense, sparse);
  if (!dense.empty()) dense_->step(dense, step, dense_lr);
  if (!sparse.empty()) sparse_->step(sparse, step, sparse_lr);
}

void ParamGroupOptimizer::set_scalars_on_device(bool on) {
  dense_->set_scalars_on_device(on);
  sparse_->set_scalars_on_device(on);
}

void ParamGroupOptimizer::prepare_step(int64_t step, double lr_scale) {
  dense_->prepare_step(step, static_cast<float>(dense_lr_ * lr_scale));
  sparse_->prepare_step(step, static_cast<float>(sparse_lr_ * lr_scale));
}

void ParamGroupOptimizer::init_state(const ParameterList& params) {
  ParameterList dense, sparse;
  split(params, dense, sparse);
  dense_->init_state(dense);
  sparse_->init_state(sparse);
}

std::vector<std::pair<std::string, Tensor*>> ParamGroupOptimizer::state() {
  std::vector<std::pair<std::string, Tensor*>> out;
  for (auto& [k, t] : dense_->state()) out.emplace_back("dense." + k, t);
  for (auto& [k, t] : sparse_->state()) out.emplace_back("sparse." + k, t);
  return out;
}

std::unique_ptr<Optimizer> make_dense_optimizer(const std::string& name, const OptimizerHyperparams& hp) {
  auto eps_or = [&](double d) { return hp.eps < 0.0 ? d : hp.eps; };
  if (name == "sgd") return std::make_unique<Sgd>(hp.weight_decay);
  if (name == "adagrad")
    return std::make_unique<Adagrad>(eps_or(1e-10), hp.initial_accumulator, hp.weight_decay, hp.lr_decay);
  if (name == "adam") return std::make_unique<Adam>(false, hp.beta1, hp.beta2, eps_or(1e-8), hp.weight_decay);
  if (name == "adamw") return std::make_unique<Adam>(true, hp.beta1, hp.beta2, eps_or(1e-8), hp.weight_decay);
  throw ConfigError("unknown dense optimizer '" + name + "' (choose sgd, adagrad, adam or adamw)");
}

std::unique_ptr<Optimizer> make_sparse_optimizer(const std::string& name, const OptimizerHyperparams& hp) {
  if (name == "sgd") return std::make_unique<SparseSgd>();
  if (name == "rowwise_adagrad" || name == "exact_rowwise_adagrad")
    return std::make_unique<RowwiseAdagrad>(hp.sparse_eps < 0.0 ? 1e-8 : hp.sparse_eps, hp.initial_accumulator,
                                            hp.sparse_weight_decay);
  throw ConfigError("unknown sparse optimizer '" + name + "' (choose sgd or rowwise_adagrad)");
}

std::unique_ptr<ParamGroupOptimizer> make_optimizers(const std::string& dense_name, const std::string& sparse_name,
                                                     const OptimizerHyperparams& hp) {
  return std::make_unique<ParamGroupOptimizer>(make_dense_optimizer(dense_name, hp),
                                               make_sparse_optimizer(sparse_name, hp), hp.dense_lr, hp.sparse_lr);
}

}  // namespace rf
