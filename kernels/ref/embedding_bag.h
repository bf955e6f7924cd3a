// Reference embedding bag (torch.nn.EmbeddingBag with offsets), plain loops on scalar type T. The
// backward here is dense, a gradient for every table row, which the tests compare with the fast
// kernel's sparse (row, value) form.
#pragma once

#include <cstdint>

namespace rf::ref {

// table [rows, dim], indices [nnz], offsets [batch + 1], out [batch, dim]. mean: divide by the bag's
// length; an empty bag gives zeros. Indices must be in range (the fast kernel validates them).
template <class T>
void embedding_bag_forward(const T* table, int64_t dim, const int64_t* indices, const int64_t* offsets,
                           int64_t batch, bool mean, T* out) {
  for (int64_t b = 0; b < batch; ++b) {
    for (int64_t d = 0; d < dim; ++d) out[b * dim + d] = T(0);
    for (int64_t k = offsets[b]; k < offsets[b + 1]; ++k)
      for (int64_t d = 0; d < dim; ++d) out[b * dim + d] += table[indices[k] * dim + d];
    const int64_t len = offsets[b + 1] - offsets[b];
    if (mean && len > 0)
      for (int64_t d = 0; d < dim; ++d) out[b * dim + d] /= T(len);
  }
}

// grad_out [batch, dim]; grad_table [rows, dim] (overwritten) = d(sum grad_out * out)/d table.
// touched [rows] (optional) is set to 1 for every row some bag looks up, else 0.
template <class T>
void embedding_bag_backward(const int64_t* indices, const int64_t* offsets, int64_t batch, const T* grad_out,
                            int64_t dim, bool mean, int64_t rows, T* grad_table, unsigned char* touched) {
  for (int64_t i = 0; i < rows * dim; ++i) grad_table[i] = T(0);
  if (touched)
    for (int64_t r = 0; r < rows; ++r) touched[r] = 0;
  for (int64_t b = 0; b < batch; ++b) {
    const int64_t len = offsets[b + 1] - offsets[b];
    for (int64_t k = offsets[b]; k < offsets[b + 1]; ++k) {
      if (touched) touched[indices[k]] = 1;
      for (int64_t d = 0; d < dim; ++d)
        grad_table[indices[k] * dim + d] += mean ? grad_out[b * dim + d] / T(len) : grad_out[b * dim + d];
    }
  }
}

}  // namespace rf::ref
