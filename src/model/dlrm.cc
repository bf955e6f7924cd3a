// DLRM forward and backward (see dlrm.h).
#include "src/model/dlrm.h"

#include "kernels/interaction.h"

namespace rf {

Dlrm::Dlrm(const ModelConfig& cfg)
    : cfg_(cfg),
      bottom_("bottom_mlp", cfg.num_dense, cfg.bottom_mlp, /*relu_last=*/true, cfg.compute),
      embeddings_(cfg.table_sizes, cfg.embedding_dim, cfg.pooling, cfg.parallel.get()),  // model parallelism
      top_("top_mlp",
           interaction_output_dim(static_cast<int64_t>(cfg.table_sizes.size()), cfg.embedding_dim,
                                  cfg.self_interaction),
           cfg.top_mlp, /*relu_last=*/false, cfg.compute, cfg.parallel.get()) {
  cfg.validate();
  // The DLRM reference initialises embeddings first, then the MLPs; the order only matters for
  // reproducing its numbers, and the seed defines everything here.
  InitRng rng(cfg.seed);
  embeddings_.init(rng);
  bottom_.init(rng);
  top_.init(rng);
}

void Dlrm::forward(const ModelInput& in, Tensor& logits) {
  int64_t batch = in.batch();
  int64_t T = embeddings_.num_tables(), d = embeddings_.dim();
  if (batch != batch_) {
    const Device dev = in.dense.device();  // activations live where the batch and the weights are
    pooled_ = Tensor::empty({batch, T, d}, DType::kF32, dev);
    interaction_ = Tensor::empty({batch, top_.in_dim()}, DType::kF32, dev);
    grad_dense_ = Tensor::empty({batch, d}, DType::kF32, dev);
    grad_pooled_ = Tensor::empty({batch, T, d}, DType::kF32, dev);
    batch_ = batch;
  }
  const Tensor& bottom_out = bottom_.forward(in.dense);
  embeddings_.forward(in.indices, in.offsets, pooled_);
  interaction_forward(bottom_out, pooled_, cfg_.self_interaction, interaction_);
  const Tensor& out = top_.forward(interaction_);
  check_shape(logits, {batch}, "logits");
  logits.copy_from(out.view({batch}));
}

void Dlrm::backward(const ModelInput& in, const Tensor& dlogits) {
  int64_t batch = in.batch();
  Tensor d_inter = top_.backward(dlogits.view({batch, 1}), /*need_input_grad=*/true, &hook_);
  interaction_backward(bottom_.forward_output(), pooled_, d_inter, cfg_.self_interaction, grad_dense_,
                       grad_pooled_);
  bottom_.backward(grad_dense_, /*need_input_grad=*/false, &hook_);
  embeddings_.backward(in.indices, in.offsets, grad_pooled_, &embedding_update_);
}

ParameterList Dlrm::parameters() {
  ParameterList out;
  bottom_.collect(out);
  embeddings_.collect(out);
  top_.collect(out);
  return out;
}

}  // namespace rf
