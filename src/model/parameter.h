// A named trainable parameter with its gradient. Names are stable ("bottom_mlp.0.weight",
// "embeddings.3.weight"): they are the keys of initial-weight files, checkpoints and exports.
#pragma once

#include <functional>
#include <string>
#include <vector>

#include "kernels/embedding_bag.h"
#include "src/core/tensor.h"

namespace rf {

enum class Sharding { kReplicated, kRowSharded, kColumnSharded, kTableSharded };

struct Parameter {
  std::string name;
  Tensor value;  // fp32 master weights, [rows, dim] for tables, PyTorch layout for dense layers
  // Dense parameters: `grad` has value's shape and is overwritten by every backward.
  // Embedding tables (sparse == true): the backward fills `sparse_grad` (unique rows + their rows of
  // gradient) and `grad` stays undefined; only the touched rows are updated by the optimizer.
  Tensor grad;
  bool sparse = false;
  SparseGrad sparse_grad;
  Sharding sharding = Sharding::kReplicated;
  // Model parallelism (src/model/model_parallel.h): a sharded parameter keeps its full name and holds
  // rows [row_begin, row_begin + value.size(0)) and columns [col_begin, ...) of a full
  // [full_rows, full_cols] tensor (1-D: full_cols = 1). kRowSharded splits dim 0, kColumnSharded dim 1.
  int64_t row_begin = 0, col_begin = 0, full_rows = -1, full_cols = -1;
  // kColumnSharded tables: for each row of sparse_grad.rows, sums over the row's full width (every
  // column shard) of g*g, g*w and w*w, [unique, 3] fp32, set by the backward. Row-wise optimizers take
  // the row's statistics from it instead of from this shard's columns, so every shard keeps the
  // accumulator one process would (the weights then move exactly as unsharded).
  Tensor full_row_sums;
};

using ParameterList = std::vector<Parameter*>;

// Called by a backward as soon as a dense parameter's gradient is final, so data parallelism can start
// reducing it while the rest of the backward runs.
using GradReadyHook = std::function<void(const Parameter*)>;

// Called by an embedding collection's backward in place of computing each table's sparse gradient:
// given the collection's tables, the batch's lookups and the gradient of the pooled embeddings
// [batch, T * dim], it applies the sparse optimizer's update straight from them (one fused pass on a
// GPU) and returns true; false leaves the backward to fill Parameter::sparse_grad as usual.
using EmbeddingUpdate = std::function<bool(const ParameterList& tables, const std::vector<Tensor>& indices,
                                           const std::vector<Tensor>& offsets, const Tensor& grad_pooled,
                                           PoolMode mode)>;

}  // namespace rf
