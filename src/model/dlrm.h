// DLRM (Naumov et al. 2019; facebookresearch/dlrm): bottom MLP on the dense features, one embedding
// bag per categorical feature, pairwise dot interaction, top MLP to one logit.
#pragma once

#include "src/model/layers.h"
#include "src/model/model.h"
#include "src/model/sharded_embedding.h"
#include "src/model/tp_mlp.h"

namespace rf {

class Dlrm : public Model {
 public:
  explicit Dlrm(const ModelConfig& cfg);
  void forward(const ModelInput& in, Tensor& logits) override;
  void backward(const ModelInput& in, const Tensor& dlogits) override;
  ParameterList parameters() override;
  void set_grad_ready_hook(GradReadyHook hook) override { hook_ = std::move(hook); }
  void set_embedding_update(EmbeddingUpdate update) override { embedding_update_ = std::move(update); }
  const ModelConfig& config() const override { return cfg_; }

 private:
  ModelConfig cfg_;
  GradReadyHook hook_;
  EmbeddingUpdate embedding_update_;
  Mlp bottom_;
  ShardedEmbeddingCollection embeddings_;  // EmbeddingCollection without cfg.parallel
  TpMlp top_;  // Mlp without cfg.parallel / tensor parallelism
  int64_t batch_ = -1;
  Tensor pooled_;       // [batch, T, dim]
  Tensor interaction_;  // [batch, interaction_output_dim]
  Tensor grad_dense_;   // [batch, dim]
  Tensor grad_pooled_;  // [batch, T, dim]
};

}  // namespace rf
