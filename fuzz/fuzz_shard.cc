// libFuzzer target: the shard reader on arbitrary bytes. Opening, verifying every block and decoding
// every row must either succeed with rows inside their tables or throw rf::DataError naming the file.
#include <vector>

#include "dataloader/shard_reader.h"
#include "fuzz/fuzz_common.h"
#include "src/core/error.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  rf::fuzz::MemFile file(data, size);
  if (file.fd < 0) return 0;
  try {
    rf::data::ShardDataset d(file.path);
    d.shard(0).verify_all();
    std::vector<rf::data::RowRef> rows;
    for (int64_t r = 0; r < d.num_rows() && r < 4096; ++r) rows.push_back({0, r});
    rf::data::BatchBuffer buf;
    rf::data::Batch b;
    d.decode(rows.data(), static_cast<int64_t>(rows.size()), buf, b);
    std::vector<int64_t> tables = d.table_sizes();
    for (int f = 0; f < b.num_sparse(); ++f) {
      const int64_t* idx = b.indices[f].data<int64_t>();
      for (int64_t i = 0; i < b.indices[f].numel(); ++i)
        if (idx[i] < 0 || idx[i] >= tables[static_cast<size_t>(f)]) __builtin_trap();
    }
  } catch (const rf::DataError&) {
  }
  return 0;
}
