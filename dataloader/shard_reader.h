// Reading binary shards: a ShardFile maps one shard read-only (the OS page cache is the read buffer,
// shuffled access is a pointer computation), checks its header and file size when opened and each
// block's checksum the first time a row of it is used; a ShardDataset is the sorted shards of a
// directory; a ShardSource is one rank's BatchSource over a dataset, decoded by prefetch workers.
#pragma once

#include <atomic>
#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "dataloader/batch_source.h"
#include "dataloader/prefetch.h"
#include "dataloader/shard_format.h"
#include "dataloader/sharding.h"

namespace rf::data {

class ShardFile {
 public:
  // Throws DataError "path: byte N: ..." for an unreadable file or a bad header (see shard_format.h).
  explicit ShardFile(const std::string& path);
  ~ShardFile();
  ShardFile(const ShardFile&) = delete;
  ShardFile& operator=(const ShardFile&) = delete;

  const std::string& path() const { return path_; }
  const ShardLayout& layout() const { return layout_; }
  int64_t num_rows() const { return static_cast<int64_t>(layout_.num_rows); }
  const uint8_t* record(int64_t row) const { return records_ + static_cast<uint64_t>(row) * stride_; }
  uint64_t record_bytes() const { return stride_; }
  // Checks block b's checksum unless it has already passed; throws DataError "path: byte N: block b
  // (rows i..j): checksum mismatch". Thread-safe.
  void verify_block(int64_t b) const;
  void verify_row(int64_t row) const {
    int64_t b = row / layout_.block_rows;
    if (!verified_[static_cast<size_t>(b)].load(std::memory_order_acquire)) verify_block(b);
  }
  void verify_all() const;
  uint64_t offset_of(const uint8_t* p) const { return static_cast<uint64_t>(p - map_); }  // file byte offset

 private:
  std::string path_;
  ShardLayout layout_;
  std::vector<uint64_t> block_checksums_;
  const uint8_t* map_ = nullptr;
  size_t map_bytes_ = 0;
  const uint8_t* records_ = nullptr;
  uint64_t stride_ = 0;
  mutable std::unique_ptr<std::atomic<bool>[]> verified_;
};

// The shards of one split: every *.rfshard file of a directory in name order, or one shard file.
class ShardDataset {
 public:
  // Throws DataError when the path holds no shards, a shard is bad, the shards disagree on their
  // layout, or (when `schema` is given) the layout does not match the config's columns.
  explicit ShardDataset(const std::string& path, const ColumnSchema* schema = nullptr);

  const std::string& path() const { return path_; }
  int num_shards() const { return static_cast<int>(shards_.size()); }
  const ShardFile& shard(int i) const { return *shards_[static_cast<size_t>(i)]; }
  const std::vector<int64_t>& shard_rows() const { return shard_rows_; }
  int64_t num_rows() const { return num_rows_; }
  int64_t block_rows() const { return block_rows_; }
  int num_dense() const { return static_cast<int>(layout_.num_dense); }
  int num_sparse() const { return static_cast<int>(layout_.features.size()); }
  // Table rows per sparse feature, as written by preprocess (largest over the shards).
  std::vector<int64_t> table_sizes() const;

  // Decodes `rows` into `out` (tensors viewed from `buf`'s reusable storage). Verifies the checksum of
  // every block it touches the first time.
  void decode(const RowRef* rows, int64_t n, BatchBuffer& buf, Batch& out) const;

 private:
  std::string path_;
  std::vector<std::unique_ptr<ShardFile>> shards_;
  std::vector<int64_t> shard_rows_;
  int64_t num_rows_ = 0;
  int64_t block_rows_ = 0;
  std::vector<std::vector<uint32_t>> feature_offsets_;  // per shard: byte offset of each feature in a record
  uint64_t max_record_bytes_ = 0;
  std::vector<bool> quad_;  // features f..f+3 categorical and adjacent: decoded four at a time
  ShardLayout layout_;  // of the first shard; the others agree except row counts and bag capacities
};

// One rank's batches over a shard dataset: its part of each global batch of the epoch order.
class ShardSource : public BatchSource {
 public:
  ShardSource(std::shared_ptr<const ShardDataset> data, int64_t global_batch, int rank, int world,
              const LoaderOptions& options);
  ~ShardSource() override;

  bool next(Batch& batch) override;
  void start_epoch(int64_t epoch) override;
  LoaderPosition position() const override;
  void seek(const LoaderPosition& position) override;
  int64_t batches_per_epoch() const override { return batches_; }
  double wait_seconds() const override { return prefetch_->wait_seconds(); }
  std::vector<int64_t> table_sizes() const override { return data_->table_sizes(); }
  std::string describe() const override;

  const ShardDataset& dataset() const { return *data_; }

 private:
  bool produce(int64_t epoch, int64_t k, BatchBuffer& buf, Batch& out) const;

  std::shared_ptr<const ShardDataset> data_;
  int64_t global_batch_;
  int rank_, world_;
  LoaderOptions options_;
  int64_t batches_ = 0;
  std::shared_ptr<const EpochOrder> order_;  // of the current epoch; replaced while workers are paused
  int64_t rows_delivered_ = 0;
  std::unique_ptr<Prefetcher> prefetch_;
};

}  // namespace rf::data
