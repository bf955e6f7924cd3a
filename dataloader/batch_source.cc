// open_train_source: TSV files through a single read-ahead worker (a text stream is sequential), shard
// directories through ShardSource. Also the text form of LoaderPosition that checkpoints store.
#include "dataloader/batch_source.h"

#include <climits>
#include <cstdio>
#include <filesystem>

#include "dataloader/prefetch.h"
#include "dataloader/shard_reader.h"
#include "dataloader/tsv_reader.h"
#include "src/core/error.h"

namespace rf::data {

std::string LoaderPosition::str() const {
  return "epoch " + std::to_string(epoch) + " batch " + std::to_string(batch) + " rows " + std::to_string(rows);
}

LoaderPosition LoaderPosition::parse(const std::string& text) {
  LoaderPosition p;
  long long e = 0, b = 0, r = 0;
  int used = 0;
  if (std::sscanf(text.c_str(), "epoch %lld batch %lld rows %lld%n", &e, &b, &r, &used) != 3 ||
      used != static_cast<int>(text.size()) || e < 0 || b < 0 || r < 0)
    throw DataError("malformed loader position '" + text + "' (expected 'epoch E batch B rows R')");
  p.epoch = e;
  p.batch = b;
  p.rows = r;
  return p;
}

bool is_shard_path(const std::string& path) {
  std::error_code ec;
  return std::filesystem::is_directory(path, ec) || std::filesystem::path(path).extension() == kShardExtension;
}

namespace {

// Every rank reads the whole text stream (it cannot be split without parsing it) and keeps its part of
// each global batch, so the rows per rank match the shard source's split exactly.
class TsvSource : public BatchSource {
 public:
  TsvSource(const ColumnSchema& schema, const std::string& path, int64_t global_batch, int rank, int world,
            const LoaderOptions& options)
      : reader_(schema, {path}, reader_options(options)),
        path_(path), global_batch_(global_batch), rank_(rank), world_(world), options_(options) {
    if (global_batch_ < 1) throw ConfigError("[train] batch_size: expected >= 1, got " + std::to_string(global_batch_));
    if (world_ < 1 || rank_ < 0 || rank_ >= world_)
      throw ConfigError("data loader: rank " + std::to_string(rank_) + " outside a world of " + std::to_string(world_));
    prefetch_ = std::make_unique<Prefetcher>(
        [this](int64_t, int64_t, BatchBuffer&, Batch& out) { return produce(out); },
        options_.threads > 0 ? 1 : 0, options_.prefetch_depth, /*pin=*/false);
    start_epoch(0);
  }
  ~TsvSource() override { prefetch_.reset(); }

  bool next(Batch& batch) override {
    if (!prefetch_->next(batch)) return false;
    rows_delivered_ += batch.size();
    return true;
  }
  void start_epoch(int64_t epoch) override { seek({epoch, 0, 0}); }
  LoaderPosition position() const override { return {prefetch_->epoch(), prefetch_->next_batch(), rows_delivered_}; }
  void seek(const LoaderPosition& pos) override {
    prefetch_->pause();
    reader_.reset();
    int64_t rows = 0;
    Batch skip;
    for (int64_t k = 0; k < pos.batch; ++k) {
      if (!reader_.next(skip, global_batch_))
        throw DataError("cannot resume " + path_ + " at " + pos.str() + ": the file has only " + std::to_string(k) +
                        " batches of " + std::to_string(global_batch_) + " rows");
      rows += part(skip.size()).size();
    }
    if (pos.rows >= 0 && rows != pos.rows)
      throw DataError("cannot resume " + path_ + " at " + pos.str() + ": rank " + std::to_string(rank_) + " of " +
                      std::to_string(world_) + " has read " + std::to_string(rows) +
                      " rows by that batch (saved with another batch size or world size?)");
    rows_delivered_ = rows;
    prefetch_->start(pos.epoch, pos.batch, INT64_MAX);
  }
  int64_t batches_per_epoch() const override { return -1; }
  double wait_seconds() const override { return prefetch_->wait_seconds(); }
  std::string bad_rows_summary() const override {
    return reader_.bad_rows() > 0 ? reader_.bad_rows_summary() : std::string();
  }
  std::string describe() const override {
    return "tsv " + path_ + ", rank " + std::to_string(rank_) + " of " + std::to_string(world_) +
           (prefetch_->threads() ? ", 1 read-ahead worker" : ", read on the caller's thread");
  }

 private:
  static ReaderOptions reader_options(const LoaderOptions& o) {
    ReaderOptions r;
    r.skip_bad_rows = o.skip_bad_rows;
    r.max_rows = o.max_rows;
    return r;
  }
  Span part(int64_t n) const { return {n * rank_ / world_, n * (rank_ + 1) / world_}; }
  bool produce(Batch& out) {
    Batch global;
    if (!reader_.next(global, global_batch_)) return false;
    if (options_.drop_last && global.size() < global_batch_) return false;
    if (world_ == 1) {
      out = std::move(global);
    } else {
      Span s = part(global.size());
      out = slice_batch(global, s.begin, s.end);
    }
    return true;
  }

  TsvReader reader_;
  std::string path_;
  int64_t global_batch_;
  int rank_, world_;
  LoaderOptions options_;
  int64_t rows_delivered_ = 0;
  std::unique_ptr<Prefetcher> prefetch_;
};

}  // namespace

std::unique_ptr<BatchSource> open_train_source(const ColumnSchema& schema, const std::string& path,
                                               int64_t global_batch, int rank, int world, const LoaderOptions& options) {
  if (path.empty()) throw ConfigError("[data] train: no training data given");
  if (is_shard_path(path)) {
    auto data = std::make_shared<const ShardDataset>(path, &schema);
    return std::make_unique<ShardSource>(std::move(data), global_batch, rank, world, options);
  }
  if (!std::filesystem::exists(path)) throw DataError("[data] train: file '" + path + "' not found");
  return std::make_unique<TsvSource>(schema, path, global_batch, rank, world, options);
}

}  // namespace rf::data
