// `recforge preprocess --config FILE --out DIR`: converts the [data] train, validation and test files
// (tab-separated, plain or gzip, in the configured column layout) into binary shards under
// DIR/train, DIR/validation and DIR/test with every core, then prints a table and a JSON line.
// Train afterwards with `recforge train --config FILE --data.train=DIR/train`.
#include <cstdio>
#include <thread>

#include "dataloader/shard_writer.h"
#include "src/cli/commands.h"
#include "src/config/config.h"
#include "src/core/error.h"
#include "src/train/data_source.h"

namespace rf::cli {

int run_preprocess(const Config& cfg) {
  data::ColumnSchema schema = schema_from(cfg);
  std::vector<data::SplitInput> splits;
  for (const char* name : {"train", "validation", "test"}) {
    const std::string& path = cfg.get_string(std::string("data.") + name);
    if (!path.empty()) splits.push_back({name, {path}});
  }
  if (splits.empty()) throw ConfigError("preprocess: none of [data] train, validation, test names a file");
  const std::string& out = cfg.get_string("data.shard_dir");
  if (out.empty()) throw ConfigError("preprocess: no output directory; give --out DIR (or [data] shard_dir)");

  data::PreprocessOptions o;
  o.shard_rows = cfg.get_int("data.shard_rows");
  o.block_rows = cfg.get_int("data.block_rows");
  o.freq_threshold = cfg.get_int("data.freq_threshold");
  o.threads = static_cast<int>(cfg.get_int("train.threads"));  // 0 = all cores
  o.skip_bad_rows = cfg.get_bool("data.skip_bad_rows");
  o.max_rows = cfg.get_int("data.max_rows") > 0 ? cfg.get_int("data.max_rows") : -1;
  data::PreprocessSummary s = data::preprocess(schema, splits, out, o);

  std::printf("recforge preprocess: %s -> %s, %d threads, %.2f s\n", cfg.get_string("data.format").c_str(),
              out.c_str(), s.threads, s.seconds);
  std::printf("%-12s %12s %8s %10s %14s %14s\n", "split", "rows", "shards", "bad rows", "input MB", "shards MB");
  int64_t rows = 0;
  for (const data::SplitSummary& sp : s.splits) {
    std::printf("%-12s %12lld %8lld %10lld %14.1f %14.1f\n", sp.name.c_str(), static_cast<long long>(sp.rows),
                static_cast<long long>(sp.shards), static_cast<long long>(sp.bad_rows), sp.input_bytes / 1e6,
                sp.output_bytes / 1e6);
    if (!sp.bad_rows_summary.empty()) std::fprintf(stderr, "recforge preprocess: %s: %s\n", sp.name.c_str(), sp.bad_rows_summary.c_str());
    rows += sp.rows;
  }
  if (o.freq_threshold > 0) {
    std::printf("vocabulary (threshold %lld) in %s/vocab.tsv; table rows:", static_cast<long long>(o.freq_threshold), out.c_str());
    for (int64_t t : s.table_rows) std::printf(" %lld", static_cast<long long>(t));
    std::printf("\n");
  }
  std::printf("{\"command\": \"preprocess\", \"rows\": %lld, \"seconds\": %.3f, \"rows_per_s\": %.1f, \"threads\": %d}\n",
              static_cast<long long>(rows), s.seconds, s.seconds > 0 ? rows / s.seconds : 0.0, s.threads);
  return 0;
}

}  // namespace rf::cli
