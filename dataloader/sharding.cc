// Epoch order and per-rank split. Shuffles are Fisher-Yates with a splitmix64 stream and Lemire's
// multiply-shift range reduction, so the order depends only on (seed, epoch, shard row counts).
#include "dataloader/sharding.h"

#include <algorithm>

#include "dataloader/hash.h"
#include "src/core/error.h"

namespace rf::data {

namespace {

struct Rng {
  uint64_t state;
  uint64_t next() { return splitmix64(state += 0x9E3779B97F4A7C15ull); }
  uint64_t below(uint64_t n) { return static_cast<uint64_t>((static_cast<unsigned __int128>(next()) * n) >> 64); }
};

// Fisher-Yates over perm (fewer than 2^31 entries): each 64-bit draw of the stream gives two 32-bit
// draws, reduced to [0, i) by Lemire's multiply-shift (bias below i / 2^32). The loader computes one
// such permutation per block it reads, so it is on the decoding path.
void shuffle_block(std::vector<uint32_t>& perm, uint64_t seed) {
  Rng rng{seed};
  uint64_t bits = 0;
  bool have = false;
  for (size_t i = perm.size(); i > 1; --i) {
    uint32_t r;
    if (have) {
      r = static_cast<uint32_t>(bits >> 32);
    } else {
      bits = rng.next();
      r = static_cast<uint32_t>(bits);
    }
    have = !have;
    std::swap(perm[i - 1], perm[(static_cast<uint64_t>(r) * i) >> 32]);
  }
}

}  // namespace

Span rank_span(int64_t total_rows, int64_t global_batch, int64_t k, int rank, int world) {
  RF_CHECK(global_batch > 0 && world > 0 && rank >= 0 && rank < world, "rank_span: batch ", global_batch, " rank ",
           rank, " world ", world);
  int64_t b = k * global_batch;
  int64_t n = std::max<int64_t>(0, std::min(global_batch, total_rows - b));
  return {b + n * rank / world, b + n * (rank + 1) / world};
}

int64_t batches_per_epoch(int64_t total_rows, int64_t global_batch, bool drop_last) {
  return drop_last ? total_rows / global_batch : (total_rows + global_batch - 1) / global_batch;
}

int64_t rank_rows_before(int64_t total_rows, int64_t global_batch, int64_t batches, int rank, int world) {
  int64_t full = std::min(batches, total_rows / global_batch);
  int64_t rows = full * (global_batch * (rank + 1) / world - global_batch * rank / world);
  for (int64_t k = full; k < batches; ++k) rows += rank_span(total_rows, global_batch, k, rank, world).size();
  return rows;
}

uint64_t mix_seed(uint64_t seed, uint64_t epoch, uint64_t salt) {
  return splitmix64(splitmix64(splitmix64(seed) ^ (epoch * 0xD1B54A32D192ED03ull)) ^ (salt * 0x8CB92BA72F3D8DD7ull));
}

EpochOrder::EpochOrder(const std::vector<int64_t>& shard_rows, int64_t block_rows, bool shuffle, uint64_t seed,
                       int64_t epoch)
    : shuffle_(shuffle), seed_(seed), epoch_(epoch) {
  RF_CHECK(block_rows > 0 && block_rows <= (int64_t{1} << 31), "EpochOrder: block_rows ", block_rows);
  int64_t id = 0;
  for (size_t s = 0; s < shard_rows.size(); ++s) {
    for (int64_t r = 0; r < shard_rows[s]; r += block_rows)
      blocks_.push_back({static_cast<int32_t>(s), r, std::min(block_rows, shard_rows[s] - r), 0, id++});
  }
  if (shuffle_) {
    Rng rng{mix_seed(seed_, static_cast<uint64_t>(epoch_), ~0ull)};
    for (size_t i = blocks_.size(); i > 1; --i) std::swap(blocks_[i - 1], blocks_[rng.below(i)]);
  }
  for (Block& b : blocks_) {
    b.start = total_;
    total_ += b.rows;
  }
}

void EpochOrder::rows(int64_t begin, int64_t end, Cursor& cursor, std::vector<RowRef>* out) const {
  RF_CHECK(0 <= begin && begin <= end && end <= total_, "EpochOrder::rows: [", begin, ", ", end, ") of ", total_);
  if (begin == end) return;
  auto it = std::upper_bound(blocks_.begin(), blocks_.end(), begin,
                             [](int64_t p, const Block& b) { return p < b.start; });
  int64_t bi = (it - blocks_.begin()) - 1;
  int64_t p = begin;
  size_t at = out->size();
  out->resize(at + static_cast<size_t>(end - begin));
  RowRef* o = out->data() + at;
  while (p < end) {
    const Block& b = blocks_[static_cast<size_t>(bi)];
    int64_t lo = p - b.start, hi = std::min(end - b.start, b.rows);
    if (!shuffle_) {
      for (int64_t i = lo; i < hi; ++i) *o++ = {b.shard, b.first_row + i};
    } else {
      if (cursor.block != b.id || cursor.epoch != epoch_ || cursor.seed != seed_) {
        cursor.perm.resize(static_cast<size_t>(b.rows));
        for (int64_t i = 0; i < b.rows; ++i) cursor.perm[static_cast<size_t>(i)] = static_cast<uint32_t>(i);
        shuffle_block(cursor.perm, mix_seed(seed_, static_cast<uint64_t>(epoch_), static_cast<uint64_t>(b.id)));
        cursor.block = b.id;
        cursor.epoch = epoch_;
        cursor.seed = seed_;
      }
      for (int64_t i = lo; i < hi; ++i) *o++ = {b.shard, b.first_row + cursor.perm[static_cast<size_t>(i)]};
    }
    p = b.start + hi;
    ++bi;
  }
}

}  // namespace rf::data
