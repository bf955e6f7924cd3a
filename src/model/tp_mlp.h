// Tensor-parallel MLP (Megatron-LM style) with Mlp's calls: layers are paired, a column-parallel
// Linear (weight split by output rows, its output kept split) followed by a row-parallel Linear
// (weight split by input columns, partial outputs all-reduced, bias added once); a last unpaired
// layer stays replicated. Every rank of the tensor-parallel group sees the same input and gets the
// same output. With a group of one it is Mlp.
#pragma once

#include <optional>
#include <string>
#include <vector>

#include "src/model/layers.h"
#include "src/model/model_parallel.h"

namespace rf {

class TpMlp {
 public:
  TpMlp(std::string prefix, int64_t in_dim, const std::vector<int64_t>& widths, bool relu_last,
        DType compute = DType::kF32, ModelParallel* mp = nullptr);

  // Mlp::init's draws (full weights, same order); each rank keeps its slices.
  void init(InitRng& rng);
  // Collectives over the tensor-parallel group (every rank of it calls them, with the same x / dy).
  const Tensor& forward(const Tensor& x);
  Tensor backward(const Tensor& dy, bool need_input_grad, const GradReadyHook* hook = nullptr);

  const Tensor& forward_output() const;
  int64_t in_dim() const { return in_dim_; }
  int64_t out_dim() const { return widths_.empty() ? in_dim_ : widths_.back(); }
  void collect(ParameterList& out);

 private:
  enum class Kind { kColumn, kRow, kReplicated };
  struct Layer {
    Kind kind;
    int64_t in_full, out_full;
    int64_t begin = 0, end = 0;  // the split range: output rows (column) or input columns (row)
    Parameter w, b;
  };
  void ensure_buffers(int64_t batch);

  std::optional<Mlp> local_;
  ModelParallel* mp_ = nullptr;
  int64_t in_dim_;
  std::vector<int64_t> widths_;
  bool relu_last_;
  DType compute_;
  std::vector<Layer> layers_;
  Tensor input_;
  std::vector<Tensor> outputs_, grads_;  // per layer: [batch, local or full width]
  Tensor grad_input_;
  int64_t batch_ = -1;
};

}  // namespace rf
