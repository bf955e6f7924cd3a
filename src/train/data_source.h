// Turns the [data] section into the dataloader's schema and readers, and a loaded batch into model
// inputs. The only place where configuration meets the dataloader.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "dataloader/batch.h"
#include "dataloader/schema.h"
#include "dataloader/tsv_reader.h"
#include "src/model/model.h"

namespace rf {

class Config;

data::ColumnSchema schema_from(const Config& cfg);
data::ReaderOptions reader_options_from(const Config& cfg);

// One table per sparse feature, sized by its hash buckets.
std::vector<int64_t> table_sizes_from(const data::ColumnSchema& schema);

// A view of the batch's tensors as model inputs (no copy on the CPU).
ModelInput model_input(const data::Batch& batch);

// Throws DataError naming the [data] key when a file it names does not exist.
void require_file(const std::string& key, const std::string& path);

}  // namespace rf
