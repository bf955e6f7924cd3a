// Writing binary shards: one batch as one shard file (write_shard), and `recforge preprocess`
// (preprocess): tab-separated splits -> <out>/<split>/part-NNNNN.rfshard using every core, with an
// optional per-feature frequency threshold whose vocabulary is written to <out>/vocab.tsv.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "dataloader/batch.h"
#include "dataloader/schema.h"

namespace rf::data {

// Encodes the rows of `batch` (schema's layout, indices < 2^32) as one shard at `path`, written to a
// temporary name and renamed. table_rows: per sparse feature (empty = the schema's hash buckets).
// Returns the bytes written.
uint64_t write_shard(const std::string& path, const ColumnSchema& schema, const Batch& batch,
                     int64_t block_rows = 1024, const std::vector<int64_t>& table_rows = {});

struct PreprocessOptions {
  int64_t shard_rows = 262144;  // rows per shard (text of about one shard is held per worker)
  // Checksum and shuffle granularity ([data] block_rows). A shuffled epoch takes blocks in random order
  // and the rows of each block in random order, so a batch is made of whole blocks (a random part of
  // one when the batch is smaller) and the reader copies each block it touches as one contiguous range.
  // Smaller blocks mix the data more across batches; blocks no larger than the per-rank batch keep the
  // reader from copying rows a batch does not use (see ShardDataset::decode).
  int64_t block_rows = 1024;
  int threads = 0;              // parse workers (0 = all cores)
  // Values of a categorical feature seen fewer than this many times in train map to index 1 ("rare");
  // 0 keeps the hashed rows. Missing stays 0; kept values are numbered 2.. by falling frequency.
  int64_t freq_threshold = 0;
  bool skip_bad_rows = false;
  int64_t max_rows = -1;        // per input file (< 0: all)
};

struct SplitInput {
  std::string name;                // "train", "validation", "test": the output sub-directory
  std::vector<std::string> paths;  // tab-separated inputs, plain or gzip
};

struct SplitSummary {
  std::string name;
  int64_t rows = 0, shards = 0, bad_rows = 0;
  uint64_t input_bytes = 0, output_bytes = 0;
  std::string bad_rows_summary;  // first bad row, when rows were skipped
};

struct PreprocessSummary {
  std::vector<SplitSummary> splits;
  std::vector<int64_t> table_rows;  // per sparse feature, as written into the shards
  double seconds = 0;
  int threads = 0;
};

// Throws DataError naming file:line for a bad input row (unless skip_bad_rows) and ConfigError for
// bad options. The vocabulary (freq_threshold > 0) is fitted on the split named "train" (the first
// split when there is none) and applied to every split.
PreprocessSummary preprocess(const ColumnSchema& schema, const std::vector<SplitInput>& splits,
                             const std::string& out_dir, const PreprocessOptions& options);

}  // namespace rf::data
