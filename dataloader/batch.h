// One batch of parsed rows in host tensors: labels, transformed dense features, and per sparse feature
// a CSR bag (indices + offsets) of hashed table rows. The reader fills it; the trainer copies it over.
#pragma once

#include <cstdint>
#include <vector>

#include "src/core/tensor.h"

namespace rf::data {

struct Batch {
  Tensor labels;                 // [B] f32, 0 or 1 (0 when the schema has no label column)
  Tensor dense;                  // [B, num_dense] f32, log(1 + max(x, 0)); empty field -> 0
  // Per sparse feature f (categorical and multi-hot, in column order):
  std::vector<Tensor> indices;   // [nnz_f] i64, rows in [0, buckets_f); 0 = empty/missing
  std::vector<Tensor> offsets;   // [B + 1] i64, bag of row b is indices[offsets[b], offsets[b+1])
  // Every bag holds at least one index: a single-valued categorical exactly one (0 when empty), a
  // multi-hot bag its tokens, and an empty multi-hot field the single index 0. So nnz_f >= B and
  // mean pooling never divides by zero.

  int64_t size() const { return labels.defined() ? labels.numel() : 0; }
  int num_sparse() const { return static_cast<int>(indices.size()); }
  int64_t num_dense() const { return dense.defined() && dense.dim() == 2 ? dense.size(1) : 0; }
};

// The batch's tensors (handles sharing its storage): labels, dense, every feature's indices, then every
// feature's offsets.
inline std::vector<Tensor> tensors_of(const Batch& b) {
  std::vector<Tensor> all{b.labels, b.dense};
  all.insert(all.end(), b.indices.begin(), b.indices.end());
  all.insert(all.end(), b.offsets.begin(), b.offsets.end());
  return all;
}

// A batch of the same features holding f(t) (a Tensor) for each tensor t of `b`.
template <class F>
Batch map_tensors(const Batch& b, F f) {
  Batch out;
  out.labels = f(b.labels);
  out.dense = f(b.dense);
  for (const Tensor& t : b.indices) out.indices.push_back(f(t));
  for (const Tensor& t : b.offsets) out.offsets.push_back(f(t));
  return out;
}

// Rows [begin, end) of `batch` as a new batch (copies; offsets rebased to start at 0).
Batch slice_batch(const Batch& batch, int64_t begin, int64_t end);

// The batch's tensors on `device`; a batch already there is returned as it is (no copy).
Batch batch_to(const Batch& batch, Device device);

}  // namespace rf::data
