// DLRM pairwise dot-product interaction, laid out as the DLRM reference (facebookresearch/dlrm,
// interact_features with arch_interaction_op="dot"): Z = [dense, emb_0, ..., emb_{T-1}] as F = T + 1
// vectors of length dim; out = [dense, <Z_i, Z_j> for i in 0..F-1, j < i (j <= i with self-interaction)],
// pairs in that row-major order.
#pragma once

#include "src/core/tensor.h"

namespace rf {

// Width of the interaction output for T tables and dimension dim.
int64_t interaction_output_dim(int64_t num_tables, int64_t dim, bool self_interaction);

// dense [batch, dim], emb [batch, T, dim], out [batch, interaction_output_dim(T, dim, self)]; fp32.
void interaction_forward(const Tensor& dense, const Tensor& emb, bool self_interaction, Tensor& out);

// grad_out [batch, out_dim]; writes (overwrites) grad_dense [batch, dim] and grad_emb [batch, T, dim].
void interaction_backward(const Tensor& dense, const Tensor& emb, const Tensor& grad_out, bool self_interaction,
                          Tensor& grad_dense, Tensor& grad_emb);

}  // namespace rf
