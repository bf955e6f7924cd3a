// Reader of tab-separated training data (Criteo layout or any ColumnSchema): reads one or more files
// in order in large blocks (plain or gzip, detected by content), parses with from_chars and hand-written
// hex, and fills Batch tensors. Bad rows throw DataError naming path:line, or are counted and skipped.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "dataloader/batch.h"
#include "dataloader/schema.h"

namespace rf::data {

struct ReaderOptions {
  bool skip_bad_rows = false;   // false: the first bad row throws DataError
  int64_t max_rows = -1;        // stop after this many good rows (< 0: no limit)
  size_t block_bytes = 4 << 20; // read size; a line longer than this grows the buffer
};

// Dense transform of the DLRM reference: negative -> 0, then log(1 + x). (Empty fields give 0.)
float dense_transform(double x);

class TsvReader {
 public:
  // Throws DataError when a file cannot be opened (checked up front), ConfigError for a bad schema.
  TsvReader(ColumnSchema schema, std::vector<std::string> paths, ReaderOptions options = {});
  ~TsvReader();
  TsvReader(const TsvReader&) = delete;
  TsvReader& operator=(const TsvReader&) = delete;

  // Fills `batch` with up to batch_size rows (the last batch may be smaller). Returns false, leaving
  // `batch` untouched, when no rows are left.
  bool next(Batch& batch, int64_t batch_size);
  // Back to the first row of the first file; counters restart.
  void reset();

  int64_t rows_read() const { return rows_read_; }  // good rows returned so far
  int64_t bad_rows() const { return bad_rows_; }     // rows skipped (skip_bad_rows)
  // "skipped N bad rows, first at path:line: reason", or "" when none were skipped.
  std::string bad_rows_summary() const;
  const ColumnSchema& schema() const { return schema_; }

 private:
  struct Impl;
  bool next_line(const char** begin, const char** end);
  bool open_next_file();
  // Appends one row to the staging buffers; on a bad row rolls them back and returns the reason.
  bool parse_row(const char* begin, const char* end, std::string* reason);
  void emit(Batch& batch, int64_t rows);

  ColumnSchema schema_;
  std::vector<std::string> paths_;
  ReaderOptions options_;
  std::unique_ptr<Impl> impl_;
  int64_t rows_read_ = 0;
  int64_t bad_rows_ = 0;
  std::string first_bad_;
};

// Reads every row of `paths` into one batch (evaluation data). Throws DataError on a bad row unless
// options.skip_bad_rows; `summary` (optional) receives bad_rows_summary().
Batch load_all(const ColumnSchema& schema, const std::vector<std::string>& paths, ReaderOptions options = {},
               std::string* summary = nullptr);
// The same rows as a sequence of batches of batch_size (the last may be smaller).
std::vector<Batch> read_batches(const ColumnSchema& schema, const std::vector<std::string>& paths,
                                int64_t batch_size, ReaderOptions options = {}, std::string* summary = nullptr);

}  // namespace rf::data
