// Reference DLRM dot interaction (facebookresearch/dlrm interact_features, "dot"), plain loops on
// scalar type T. Z = [dense, emb_0, ..., emb_{T-1}]; out = [dense, <Z_i, Z_j> for i, j < i (j <= i with
// self-interaction)].
#pragma once

#include <cstdint>

namespace rf::ref {

template <class T>
int64_t interaction_output_dim(int64_t tables, int64_t dim, bool self) {
  const int64_t f = tables + 1;
  return dim + (self ? f * (f + 1) / 2 : f * (f - 1) / 2);
}

// dense [batch, dim], emb [batch, tables, dim], out [batch, interaction_output_dim].
template <class T>
void interaction_forward(const T* dense, const T* emb, int64_t batch, int64_t tables, int64_t dim, bool self,
                         T* out) {
  const int64_t f = tables + 1, out_dim = interaction_output_dim<T>(tables, dim, self);
  for (int64_t b = 0; b < batch; ++b) {
    auto z = [&](int64_t i, int64_t d) { return i == 0 ? dense[b * dim + d] : emb[(b * tables + i - 1) * dim + d]; };
    int64_t p = 0;
    for (int64_t d = 0; d < dim; ++d) out[b * out_dim + p++] = dense[b * dim + d];
    for (int64_t i = 0; i < f; ++i)
      for (int64_t j = 0; j < (self ? i + 1 : i); ++j) {
        T acc = 0;
        for (int64_t d = 0; d < dim; ++d) acc += z(i, d) * z(j, d);
        out[b * out_dim + p++] = acc;
      }
  }
}

// grad_out [batch, out_dim]; grad_dense [batch, dim], grad_emb [batch, tables, dim] (overwritten).
template <class T>
void interaction_backward(const T* dense, const T* emb, const T* grad_out, int64_t batch, int64_t tables,
                          int64_t dim, bool self, T* grad_dense, T* grad_emb) {
  const int64_t f = tables + 1, out_dim = interaction_output_dim<T>(tables, dim, self);
  for (int64_t b = 0; b < batch; ++b) {
    auto z = [&](int64_t i, int64_t d) { return i == 0 ? dense[b * dim + d] : emb[(b * tables + i - 1) * dim + d]; };
    auto gz = [&](int64_t i, int64_t d) -> T& {
      return i == 0 ? grad_dense[b * dim + d] : grad_emb[(b * tables + i - 1) * dim + d];
    };
    for (int64_t d = 0; d < dim; ++d) grad_dense[b * dim + d] = grad_out[b * out_dim + d];
    for (int64_t t = 0; t < tables * dim; ++t) grad_emb[b * tables * dim + t] = T(0);
    int64_t p = dim;
    for (int64_t i = 0; i < f; ++i)
      for (int64_t j = 0; j < (self ? i + 1 : i); ++j) {
        const T g = grad_out[b * out_dim + p++];
        for (int64_t d = 0; d < dim; ++d) {
          gz(i, d) += g * z(j, d);
          gz(j, d) += g * z(i, d);
        }
      }
  }
}

}  // namespace rf::ref
