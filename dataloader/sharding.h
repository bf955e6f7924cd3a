// Which rows a rank reads, in which order: the epoch's order over all shards (blocks of block_rows
// consecutive rows, block order and the order inside each block shuffled from (seed, epoch)), cut into
// global batches, each global batch split into world contiguous parts, one per rank. Every row is in
// exactly one rank's part of exactly one global batch per epoch, whatever the number of files and ranks.
#pragma once

#include <cstdint>
#include <vector>

namespace rf::data {

struct RowRef {
  int32_t shard;
  int64_t row;  // inside the shard
};

// Rank r's part of global batch k: positions [begin, end) of the epoch order. Rows of a global batch of
// n rows go to ranks as n*r/world .. n*(r+1)/world, so parts differ by at most one row; a final global
// batch with fewer rows than ranks leaves some ranks an empty part (every rank still takes the step).
struct Span {
  int64_t begin = 0, end = 0;
  int64_t size() const { return end - begin; }
};
Span rank_span(int64_t total_rows, int64_t global_batch, int64_t k, int rank, int world);
// Global batches in an epoch: ceil(total / global_batch), or floor with drop_last.
int64_t batches_per_epoch(int64_t total_rows, int64_t global_batch, bool drop_last);
// Rows rank `rank` receives in the first `batches` global batches of an epoch.
int64_t rank_rows_before(int64_t total_rows, int64_t global_batch, int64_t batches, int rank, int world);

// A deterministic stream of 64-bit values from (seed, epoch, salt): splitmix64 over a mixed key.
uint64_t mix_seed(uint64_t seed, uint64_t epoch, uint64_t salt);

// The order of one epoch over shards of the given row counts.
class EpochOrder {
 public:
  // shuffle=false: shards in order, rows in order (seed and epoch unused).
  EpochOrder(const std::vector<int64_t>& shard_rows, int64_t block_rows, bool shuffle, uint64_t seed, int64_t epoch);

  int64_t total_rows() const { return total_; }
  int64_t num_blocks() const { return static_cast<int64_t>(blocks_.size()); }

  // Per-thread scratch for the permutation of the block being read (recomputed when the block changes).
  struct Cursor {
    int64_t block = -1, epoch = -1;
    uint64_t seed = 0;
    std::vector<uint32_t> perm;
  };
  // Appends the rows at positions [begin, end) to `out`.
  void rows(int64_t begin, int64_t end, Cursor& cursor, std::vector<RowRef>* out) const;

 private:
  struct Block {
    int32_t shard;
    int64_t first_row;
    int64_t rows;
    int64_t start;  // position of its first row in the epoch order
    int64_t id;     // index before shuffling (the within-block permutation's salt)
  };
  std::vector<Block> blocks_;
  int64_t total_ = 0;
  bool shuffle_;
  uint64_t seed_;
  int64_t epoch_;
};

}  // namespace rf::data
