// MLP and embedding-collection layers (see layers.h).
#include "src/model/layers.h"

#include <cmath>

#include "kernels/activation.h"
#include "kernels/concat.h"
#include "kernels/linear.h"

namespace rf {

uint64_t InitRng::next_u64() {  // splitmix64: tiny, fast, and identical on every platform
  uint64_t z = (state_ += 0x9e3779b97f4a7c15ull);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  return z ^ (z >> 31);
}

double InitRng::uniform() { return static_cast<double>(next_u64() >> 11) * 0x1.0p-53; }

double InitRng::normal(double mean, double sd) {
  double u1 = uniform(), u2 = uniform();
  if (u1 < 1e-300) u1 = 1e-300;
  return mean + sd * std::sqrt(-2.0 * std::log(u1)) * std::cos(2.0 * M_PI * u2);
}

// ---- Mlp --------------------------------------------------------------------------------------------

Mlp::Mlp(std::string prefix, int64_t in_dim, const std::vector<int64_t>& widths, bool relu_last, DType compute)
    : in_dim_(in_dim), widths_(widths), relu_last_(relu_last), compute_(compute) {
  int64_t fan_in = in_dim;
  for (size_t i = 0; i < widths.size(); ++i) {
    Parameter w, b;
    w.name = prefix + "." + std::to_string(i) + ".weight";
    b.name = prefix + "." + std::to_string(i) + ".bias";
    w.value = Tensor::zeros({widths[i], fan_in}, DType::kF32);
    w.grad = Tensor::zeros({widths[i], fan_in}, DType::kF32);
    b.value = Tensor::zeros({widths[i]}, DType::kF32);
    b.grad = Tensor::zeros({widths[i]}, DType::kF32);
    weights_.push_back(std::move(w));
    biases_.push_back(std::move(b));
    fan_in = widths[i];
  }
}

void Mlp::init(InitRng& rng) {
  for (size_t i = 0; i < weights_.size(); ++i) {
    Tensor& w = weights_[i].value;
    int64_t fan_out = w.size(0), fan_in = w.size(1);
    double sd_w = std::sqrt(2.0 / static_cast<double>(fan_in + fan_out));
    double sd_b = std::sqrt(1.0 / static_cast<double>(fan_out));
    float* pw = w.data<float>();
    for (int64_t k = 0; k < w.numel(); ++k) pw[k] = static_cast<float>(rng.normal(0.0, sd_w));
    float* pb = biases_[i].value.data<float>();
    for (int64_t k = 0; k < fan_out; ++k) pb[k] = static_cast<float>(rng.normal(0.0, sd_b));
  }
}

void Mlp::ensure_buffers(int64_t batch, Device device) {
  if (batch == batch_ && device == device_) return;
  outputs_.clear();
  grad_buffers_.clear();
  for (int64_t w : widths_) {
    outputs_.push_back(Tensor::empty({batch, w}, DType::kF32, device));
    grad_buffers_.push_back(Tensor::empty({batch, w}, DType::kF32, device));
  }
  grad_input_ = Tensor::empty({batch, in_dim_}, DType::kF32, device);
  batch_ = batch;
  device_ = device;
}

const Tensor& Mlp::forward(const Tensor& x) {
  RF_CHECK(x.dim() == 2 && x.size(1) == in_dim_, weights_.empty() ? "mlp" : weights_[0].name,
           ": input ", shape_str(x.shape()), ", expected [batch, ", in_dim_, "]");
  ensure_buffers(x.size(0), x.device());
  input_ = x;
  const Tensor* in = &x;
  for (size_t i = 0; i < weights_.size(); ++i) {
    linear_forward(*in, weights_[i].value, &biases_[i].value, outputs_[i], compute_);
    if (i + 1 < weights_.size() || relu_last_) relu_forward(outputs_[i], outputs_[i]);
    in = &outputs_[i];
  }
  return weights_.empty() ? input_ : outputs_.back();
}

Tensor Mlp::backward(const Tensor& dy, bool need_input_grad, const GradReadyHook* hook) {
  if (weights_.empty()) return dy;
  size_t n = weights_.size();
  // grad_buffers_[i] holds d(loss)/d(output of layer i before its activation) once the ReLU is undone.
  Tensor g = dy;
  for (size_t k = n; k-- > 0;) {
    if (k + 1 < n || relu_last_) {
      relu_backward(outputs_[k], g, grad_buffers_[k]);
      g = grad_buffers_[k];
    }
    const Tensor& in = k == 0 ? input_ : outputs_[k - 1];
    Tensor* dx = nullptr;
    if (k > 0) dx = &grad_buffers_[k - 1];
    else if (need_input_grad) dx = &grad_input_;
    linear_backward(in, weights_[k].value, g, dx, weights_[k].grad, &biases_[k].grad, compute_);
    if (hook && *hook) {
      (*hook)(&weights_[k]);
      (*hook)(&biases_[k]);
    }
    if (dx) g = *dx;
  }
  return need_input_grad ? grad_input_ : Tensor();
}

void Mlp::collect(ParameterList& out) {
  for (size_t i = 0; i < weights_.size(); ++i) {
    out.push_back(&weights_[i]);
    out.push_back(&biases_[i]);
  }
}

// ---- EmbeddingCollection ----------------------------------------------------------------------------

EmbeddingCollection::EmbeddingCollection(const std::vector<int64_t>& table_sizes, int64_t dim, PoolMode mode)
    : dim_(dim), mode_(mode) {
  for (size_t t = 0; t < table_sizes.size(); ++t) {
    Parameter p;
    p.name = "embeddings." + std::to_string(t) + ".weight";
    p.value = Tensor::zeros({table_sizes[t], dim}, DType::kF32);
    p.sparse = true;
    tables_.push_back(std::move(p));
  }
}

void EmbeddingCollection::init(InitRng& rng) {
  for (Parameter& p : tables_) {
    double bound = std::sqrt(1.0 / static_cast<double>(p.value.size(0)));
    float* w = p.value.data<float>();
    for (int64_t k = 0; k < p.value.numel(); ++k) w[k] = static_cast<float>((2.0 * rng.uniform() - 1.0) * bound);
  }
}

void EmbeddingCollection::forward(const std::vector<Tensor>& indices, const std::vector<Tensor>& offsets,
                                  Tensor& pooled) {
  int64_t T = num_tables();
  RF_CHECK(static_cast<int64_t>(indices.size()) == T && static_cast<int64_t>(offsets.size()) == T,
           "embedding collection has ", T, " tables, batch has ", indices.size(), " categorical features");
  int64_t batch = offsets.empty() ? 0 : offsets[0].numel() - 1;
  check_shape(pooled, {batch, T, dim_}, "pooled embeddings");
  if (T == 0) return;
  // [batch, T, dim]: the interaction and cross layers read one sample's T vectors contiguously; every
  // table's bags are pooled straight into their columns (one launch on a GPU).
  std::vector<Tensor> tables;
  for (const Parameter& p : tables_) tables.push_back(p.value);
  Tensor wide = pooled.view({batch, T * dim_});
  embedding_bags_forward(tables, indices, offsets, mode_, wide);
}

void EmbeddingCollection::backward(const std::vector<Tensor>& indices, const std::vector<Tensor>& offsets,
                                   const Tensor& grad_pooled, const EmbeddingUpdate* update) {
  int64_t T = num_tables();
  int64_t batch = grad_pooled.size(0);
  if (T == 0) return;
  if (update && *update) {
    ParameterList tables;
    for (Parameter& p : tables_) tables.push_back(&p);
    if ((*update)(tables, indices, offsets, grad_pooled.view({batch, T * dim_}), mode_)) {
      for (Parameter& p : tables_) p.sparse_grad = SparseGrad{};  // updated already: nothing for the optimizer
      return;
    }
  }
  std::vector<int64_t> rows;
  for (const Parameter& p : tables_) rows.push_back(p.value.size(0));
  std::vector<SparseGrad> grads =
      embedding_bags_backward(indices, offsets, grad_pooled.view({batch, T * dim_}), mode_, rows);
  for (int64_t t = 0; t < T; ++t) tables_[t].sparse_grad = std::move(grads[static_cast<size_t>(t)]);
}

void EmbeddingCollection::collect(ParameterList& out) {
  for (Parameter& p : tables_) out.push_back(&p);
}

}  // namespace rf
