// Building blocks shared by the models: an MLP of Linear layers, and the collection of embedding bags
// (one table per categorical feature). Each owns its parameters and the activations its backward needs.
#pragma once

#include <cstdint>
#include <random>
#include <string>
#include <vector>

#include "kernels/embedding_bag.h"
#include "src/core/tensor.h"
#include "src/model/parameter.h"

namespace rf {

// Deterministic initialisation from one seed, independent of the standard library's distributions
// (whose algorithms differ between implementations), so that weights are the same everywhere.
class InitRng {
 public:
  explicit InitRng(uint64_t seed) : state_(seed) {}
  uint64_t next_u64();
  double uniform();                      // [0, 1)
  double normal(double mean, double sd); // Box-Muller
 private:
  uint64_t state_;
};

// Linear layers out_i = act(in_i w_i^T + b_i): ReLU after every layer, or every layer but the last.
class Mlp {
 public:
  // widths: output width of each layer; in_dim: width of the first layer's input; compute: the GEMMs'
  // operand type (linear.h), parameters and activations stay fp32.
  Mlp(std::string prefix, int64_t in_dim, const std::vector<int64_t>& widths, bool relu_last,
      DType compute = DType::kF32);

  // DLRM reference initialisation: W ~ N(0, sqrt(2 / (fan_in + fan_out))), b ~ N(0, sqrt(1 / fan_out)).
  void init(InitRng& rng);

  // x [batch, in_dim] -> returns [batch, out_dim]; keeps every layer's input and output.
  const Tensor& forward(const Tensor& x);
  // dy [batch, out_dim]; writes every layer's weight/bias gradient. Returns d(input) or, when
  // need_input_grad is false, an undefined tensor (the first GEMM for dx is skipped).
  // Calls `hook` (when set) for each layer's weight and bias right after their gradients are written.
  Tensor backward(const Tensor& dy, bool need_input_grad, const GradReadyHook* hook = nullptr);

  // The last forward's output (its input when the MLP has no layers).
  const Tensor& forward_output() const { return widths_.empty() ? input_ : outputs_.back(); }
  int64_t in_dim() const { return in_dim_; }
  int64_t out_dim() const { return widths_.empty() ? in_dim_ : widths_.back(); }
  void collect(ParameterList& out);

 private:
  // Activation buffers live on the input's device (the model's device).
  void ensure_buffers(int64_t batch, Device device);

  int64_t in_dim_;
  std::vector<int64_t> widths_;
  bool relu_last_;
  DType compute_;
  std::vector<Parameter> weights_, biases_;
  Tensor input_;                     // [batch, in_dim] as given to forward (a view, not a copy)
  std::vector<Tensor> outputs_;      // [batch, widths[i]] after activation
  std::vector<Tensor> grad_buffers_; // [batch, widths[i]] scratch for the backward
  Tensor grad_input_;                // [batch, in_dim]
  int64_t batch_ = -1;
  Device device_;
};

// One embedding bag per categorical feature; table t has table_sizes[t] rows of `dim`.
class EmbeddingCollection {
 public:
  EmbeddingCollection(const std::vector<int64_t>& table_sizes, int64_t dim, PoolMode mode);

  // DLRM reference initialisation: U(-sqrt(1 / rows), sqrt(1 / rows)).
  void init(InitRng& rng);

  // indices[t] [nnz_t] int64, offsets[t] [batch + 1]; writes pooled [batch, T, dim] fp32.
  void forward(const std::vector<Tensor>& indices, const std::vector<Tensor>& offsets, Tensor& pooled);
  // grad_pooled [batch, T, dim]: fills each table's sparse gradient, or, when `update` is set and
  // takes them, hands the tables to it (their sparse gradients are then left empty).
  void backward(const std::vector<Tensor>& indices, const std::vector<Tensor>& offsets, const Tensor& grad_pooled,
                const EmbeddingUpdate* update = nullptr);

  int64_t num_tables() const { return static_cast<int64_t>(tables_.size()); }
  int64_t dim() const { return dim_; }
  void collect(ParameterList& out);

 private:
  int64_t dim_;
  PoolMode mode_;
  std::vector<Parameter> tables_;
};

}  // namespace rf
