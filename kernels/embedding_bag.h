// Embedding bags: pooled lookups of variable-length index lists (bags) into one table, as
// torch.nn.EmbeddingBag with offsets. The backward is sparse: the unique rows touched and their
// gradient rows, which the sparse optimizers (SGD, row-wise Adagrad) apply to the table.
#pragma once

#include <vector>

#include "src/core/tensor.h"

namespace rf {

enum class PoolMode { kSum, kMean };
PoolMode parse_pool_mode(const std::string& name);  // "sum" or "mean"

// table [rows, dim] (fp32, fp16 or bf16 storage), indices [nnz] int64, offsets [batch + 1] int64 with
// offsets[0] == 0 and offsets[batch] == nnz; out [batch, dim] fp32. An empty bag pools to zeros; mean
// divides by the bag's length. An index outside [0, rows) throws DataError naming bag and index.
void embedding_bag_forward(const Tensor& table, const Tensor& indices, const Tensor& offsets, PoolMode mode,
                           Tensor& out);

struct SparseGrad {
  Tensor rows;    // [unique] int64, ascending, each row once
  Tensor values;  // [unique, dim] fp32: sum over every lookup of that row of its pooled gradient share
};

// grad_out [batch, dim] fp32. Rows never looked up are absent from the result.
SparseGrad embedding_bag_backward(const Tensor& indices, const Tensor& offsets, const Tensor& grad_out,
                                  PoolMode mode, int64_t num_rows);

// ---- many tables, one batch (an embedding collection): one launch per step of the work on a GPU ----
// tables[t] [rows_t, dim] (one dtype and one dim for all), indices[t] and offsets[t] as above with the
// same batch for every t. out [batch, T * dim] fp32: table t's bags pooled into columns
// [t * dim, (t + 1) * dim), the [batch, T, dim] layout the interaction and cross layers read. Equal to T
// calls of embedding_bag_forward written into those columns; a bad index throws DataError naming the
// table as well as bag and index.
void embedding_bags_forward(const std::vector<Tensor>& tables, const std::vector<Tensor>& indices,
                            const std::vector<Tensor>& offsets, PoolMode mode, Tensor& out);
// grad_out [batch, T * dim] fp32 as out above; result[t] = embedding_bag_backward(indices[t], offsets[t],
// columns of table t, mode, num_rows[t]). On a GPU: one sort of every table's lookups together and one
// synchronisation for all tables.
std::vector<SparseGrad> embedding_bags_backward(const std::vector<Tensor>& indices, const std::vector<Tensor>& offsets,
                                                const Tensor& grad_out, PoolMode mode,
                                                const std::vector<int64_t>& num_rows);

// The offset and index checks embedding_bags_forward makes (DataError naming the table, bag and position
// of the first bad value), and nothing else; on a GPU one launch and one synchronisation. The CUDA graph
// step checks its batches here before replaying, since the captured step cannot stop to look.
void check_embedding_bags(const std::vector<Tensor>& indices, const std::vector<Tensor>& offsets,
                          const std::vector<int64_t>& num_rows);

}  // namespace rf
