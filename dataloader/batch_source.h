// The interface the trainer reads training batches through, whatever the files are: a TSV file (read
// in order) or a directory of binary shards (shuffled per epoch, read by prefetch workers). A source
// belongs to one rank and yields that rank's part of each global batch; a position says where it is so
// that a checkpoint can store it and a restarted run continue with exactly the remaining rows.
//
// Use:
//   auto src = open_train_source(schema, cfg data.train, global_batch, rank, world, options);
//   for (int64_t epoch = first; epoch < epochs; ++epoch) {
//     src->start_epoch(epoch);                       // or src->seek(saved) when resuming
//     Batch b;
//     while (src->next(b)) train_step(b);            // b stays valid for two more calls to next()
//   }
//   checkpoint: save src->position(); data wait per step: differences of src->wait_seconds().
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "dataloader/batch.h"
#include "dataloader/schema.h"

namespace rf::data {

// Where a source is inside an epoch. `batch` counts global batches (steps) already delivered in
// `epoch` and is the same on every rank; `rows` is what this rank has delivered in those batches
// (stored so that seek() can check that the world size and batch size are the ones it was saved with).
struct LoaderPosition {
  int64_t epoch = 0;
  int64_t batch = 0;
  int64_t rows = 0;  // this rank's rows so far; seek() checks it, unless < 0 (position from another world size)

  bool operator==(const LoaderPosition&) const = default;
  std::string str() const;  // "epoch 2 batch 17 rows 34816", also the format parse() reads
  static LoaderPosition parse(const std::string& text);  // throws DataError on a malformed text
};

struct LoaderOptions {
  bool shuffle = false;        // shards only: per-epoch block and within-block shuffle
  uint64_t seed = 0;           // shuffle seed; the epoch is mixed in
  int threads = 2;             // shards: decode workers (0 = decode in next() on the caller's thread)
  int prefetch_depth = 4;      // batch buffers (>= 3): depth - 2 batches are decoded ahead of the consumer
  bool drop_last = false;      // drop the final global batch when it is smaller than the batch size
  bool pin_memory = true;      // page-lock the buffers when a CUDA device is present (async H2D copies)
  // TSV only:
  bool skip_bad_rows = false;
  int64_t max_rows = -1;
};

class BatchSource {
 public:
  virtual ~BatchSource() = default;

  // This rank's part of the next global batch of the current epoch; false at the end of the epoch
  // (the batch is left untouched). A rank's part may hold 0 rows when the final global batch has
  // fewer rows than there are ranks, so that all ranks take the same number of steps. The tensors may
  // live in the source's reused buffers: they stay valid until the second following call to next(),
  // or until seek()/start_epoch(), so a consumer can train on one batch while the previous one's
  // host-to-device copy completes.
  virtual bool next(Batch& batch) = 0;

  // Rewinds to the start of `epoch` (the shuffle of that epoch). A new source is at epoch 0, batch 0.
  virtual void start_epoch(int64_t epoch) = 0;

  // Position after the last batch returned by next() (not after what is prefetched).
  virtual LoaderPosition position() const = 0;
  // Continues from a position taken by position() with the same data, batch size and world size.
  // Throws DataError when the position does not fit this source.
  virtual void seek(const LoaderPosition& position) = 0;

  // Global batches per epoch (the same on every rank); -1 when unknown until read (TSV).
  virtual int64_t batches_per_epoch() const = 0;
  // Seconds next() has spent blocked waiting for data since the source was made: the trainer's data
  // wait (a synchronous source counts its whole read time).
  virtual double wait_seconds() const { return 0.0; }
  // Rows of each sparse feature's table as the data defines it (shards preprocessed with a frequency
  // threshold have vocabulary-sized tables); empty when the schema's hash buckets apply.
  virtual std::vector<int64_t> table_sizes() const { return {}; }
  // "skipped N bad rows, first at file:line: reason" once rows were skipped (skip_bad_rows), else "".
  // Call it between epochs or at the end, when no worker is reading.
  virtual std::string bad_rows_summary() const { return ""; }
  // One line for the log: "shards data/train (12 files, 45840617 rows), 2 workers, shuffle seed 7".
  virtual std::string describe() const = 0;
};

// `path` a directory (or one *.rfshard file) -> shard-backed source with prefetch workers; any other
// file -> TSV-backed source (plain or gzip) that reads every global batch and keeps this rank's part.
// global_batch is the global batch size (train.batch_size); rank in [0, world). Throws DataError for
// missing or bad files, with the file and byte offset for shards.
std::unique_ptr<BatchSource> open_train_source(const ColumnSchema& schema, const std::string& path,
                                               int64_t global_batch, int rank, int world,
                                               const LoaderOptions& options = {});

// True when `path` names shards (a directory, or a file with the shard extension).
bool is_shard_path(const std::string& path);

}  // namespace rf::data
