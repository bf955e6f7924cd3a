// Embedding tables sharded over the ranks of a communicator (table-wise, row-wise or column-wise per
// table, from a ShardingPlan), with the shapes and calls of EmbeddingCollection: pooled [batch, T, dim]
// out, sparse gradients in. Each rank passes its own samples; indices travel to the ranks holding
// their rows with one all_to_all_v, pooled blocks come back with another, and the backward sends the
// pooled gradients to the owners, which keep sparse gradients for their shards only (so the sparse
// optimizer and its state exist only for the shard). Without a plan it is EmbeddingCollection.
// Tables and activations may live on a GPU: indices are routed on the host and exchanged over the host
// group (ModelParallel::embedding_comm), pooled embeddings and their gradients are packed on the
// device and exchanged over ModelParallel::embedding_payload_comm (NCCL there, MPI on the CPU); the
// same code runs on both.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <vector>

#include "src/model/layers.h"
#include "src/model/model_parallel.h"

namespace rf {

class ShardedEmbeddingCollection {
 public:
  // mp == nullptr or mp->plan() == nullptr: every table replicated and local (EmbeddingCollection).
  ShardedEmbeddingCollection(const std::vector<int64_t>& table_sizes, int64_t dim, PoolMode mode,
                             ModelParallel* mp = nullptr);

  // The values EmbeddingCollection::init gives the full tables (same draws, same order); each rank
  // keeps the elements of its shards. Costs one draw per element of every table on every rank.
  void init(InitRng& rng);

  // Collective over the embedding group when sharded: every rank calls it, each with its own batch
  // (batches may differ in size, may be empty). indices[t] [nnz_t], offsets[t] [batch + 1];
  // pooled [batch, T, dim].
  void forward(const std::vector<Tensor>& indices, const std::vector<Tensor>& offsets, Tensor& pooled);
  // grad_pooled [batch, T, dim] for the last forward's batch. Sharded tables get, on their owners, the
  // sum over every rank's samples divided by the group size (the data-parallel average, as
  // sync_sparse_grads gives replicated tables); replicated tables get this rank's sparse gradient.
  // `update`: EmbeddingCollection's, used only when no table is sharded.
  void backward(const std::vector<Tensor>& indices, const std::vector<Tensor>& offsets, const Tensor& grad_pooled,
                const EmbeddingUpdate* update = nullptr);

  int64_t num_tables() const { return static_cast<int64_t>(sizes_.size()); }
  int64_t dim() const { return dim_; }
  // The tables (or shards) this rank holds, in table order.
  void collect(ParameterList& out);

  // Collective over the embedding group: table t in full on every rank (checkpoints, exports).
  Tensor gather_full_table(int t);

 private:
  struct Owned {      // a piece of a sharded table this rank holds
    int table;
    ShardPiece piece;
    // From the last forward, the bags of every source rank in rank order: [sum of batches + 1] and the
    // piece-local rows, so the backward needs no second index exchange.
    std::vector<int64_t> offsets, rows;
  };
  bool sharded() const { return plan_ != nullptr; }
  // Collective over the embedding group, after the backward: Parameter::full_row_sums of every
  // column-sharded piece (row-wise Adagrad over the full row; see the .cc).
  void exchange_full_row_sums();
  Communicator& comm() { return mp_->embedding_comm(); }
  // Pieces held by `rank`, in table order (the order of every message to and from it).
  const std::vector<std::pair<int, ShardPiece>>& pieces_of(int rank) const { return by_rank_[rank]; }

  std::vector<int64_t> sizes_;
  int64_t dim_;
  PoolMode mode_;
  ModelParallel* mp_ = nullptr;
  const ShardingPlan* plan_ = nullptr;
  bool has_column_tables_ = false;  // column-sharded tables under a row-wise optimizer
  std::optional<EmbeddingCollection> local_;  // no plan: the single-process layer itself
  std::vector<Parameter> params_;             // tables and shards held here, table order
  std::vector<int> param_of_table_;           // index into params_, or -1
  std::vector<std::vector<std::pair<int, ShardPiece>>> by_rank_;
  std::vector<Owned> owned_;
  std::vector<int64_t> batches_;              // every rank's batch in the last forward
};

// Collective over mp's embedding group: table t of a sharded collection in full on every rank.
inline Tensor gather_full_table(ShardedEmbeddingCollection& tables, int t) { return tables.gather_full_table(t); }

}  // namespace rf
