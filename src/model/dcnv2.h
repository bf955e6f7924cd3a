// DCNv2 (Wang et al. 2021) in the MLPerf DLRM-DCNv2 arrangement: bottom MLP on the dense features,
// embedding bags, cross layers over x0 = [bottom output, embeddings...], then the top (deep) MLP.
#pragma once

#include <vector>

#include "kernels/cross.h"
#include "src/model/layers.h"
#include "src/model/model.h"
#include "src/model/sharded_embedding.h"
#include "src/model/tp_mlp.h"

namespace rf {

class Dcnv2 : public Model {
 public:
  explicit Dcnv2(const ModelConfig& cfg);
  void forward(const ModelInput& in, Tensor& logits) override;
  void backward(const ModelInput& in, const Tensor& dlogits) override;
  ParameterList parameters() override;
  void set_grad_ready_hook(GradReadyHook hook) override { hook_ = std::move(hook); }
  void set_embedding_update(EmbeddingUpdate update) override { embedding_update_ = std::move(update); }
  const ModelConfig& config() const override { return cfg_; }

 private:
  struct CrossLayer {
    Parameter w, v, u, b;  // w full rank; v, u low rank
    CrossWeights weights() const;
    CrossSaved saved;
  };

  ModelConfig cfg_;
  GradReadyHook hook_;
  EmbeddingUpdate embedding_update_;
  int64_t width_;  // dim * (T + 1)
  Mlp bottom_;
  ShardedEmbeddingCollection embeddings_;  // EmbeddingCollection without cfg.parallel
  std::vector<CrossLayer> cross_;
  TpMlp top_;  // Mlp without cfg.parallel / tensor parallelism
  int64_t batch_ = -1;
  Tensor pooled_;             // [batch, T, dim]
  std::vector<Tensor> xs_;    // x_0 .. x_L, each [batch, width]
  Tensor grad_x0_, grad_x_, grad_x_next_;  // [batch, width]
  Tensor grad_dense_, grad_pooled_;
};

}  // namespace rf
