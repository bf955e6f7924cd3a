// [data] -> dataloader schema and reader options.
#include "src/train/data_source.h"

#include <filesystem>

#include "src/config/config.h"
#include "src/core/error.h"

namespace rf {

data::ColumnSchema schema_from(const Config& cfg) {
  const std::string& format = cfg.get_string("data.format");
  data::ColumnSchema schema;
  if (format == "criteo") {
    schema = data::ColumnSchema::criteo();
  } else {
    const auto& spec = cfg.get_string_list("data.schema");
    if (spec.empty()) throw ConfigError("[data] schema: format=" + format + " needs a column schema, e.g. label,dense*13,cat*26");
    schema = data::ColumnSchema::parse(spec);
  }
  schema.hash_buckets = {cfg.get_int("data.hash_buckets")};
  const std::string& sep = cfg.get_string("data.multi_hot_separator");
  if (sep.size() != 1) throw ConfigError("[data] multi_hot_separator: expected one character, got '" + sep + "'");
  schema.multi_hot_separator = sep[0];
  schema.validate();
  return schema;
}

data::ReaderOptions reader_options_from(const Config& cfg) {
  data::ReaderOptions o;
  o.skip_bad_rows = cfg.get_bool("data.skip_bad_rows");
  int64_t max_rows = cfg.get_int("data.max_rows");
  o.max_rows = max_rows > 0 ? max_rows : -1;
  return o;
}

std::vector<int64_t> table_sizes_from(const data::ColumnSchema& schema) {
  std::vector<int64_t> sizes;
  for (int f = 0; f < schema.num_sparse(); ++f) sizes.push_back(schema.buckets(f));
  return sizes;
}

ModelInput model_input(const data::Batch& batch) {
  ModelInput in;
  in.dense = batch.dense;
  in.indices = batch.indices;
  in.offsets = batch.offsets;
  return in;
}

void require_file(const std::string& key, const std::string& path) {
  if (path.empty()) throw ConfigError("[data] " + key + ": no file given");
  if (!std::filesystem::exists(path))
    throw DataError("[data] " + key + ": file '" + path + "' not found");
}

}  // namespace rf
