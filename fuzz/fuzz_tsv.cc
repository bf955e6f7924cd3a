// libFuzzer target: the TSV reader on arbitrary bytes, with the Criteo layout and with a layout that
// has multi-hot and string tokens. Bad rows must end in rf::DataError (or be counted when skipping);
// anything else (a crash, a sanitizer report, another exception) is a bug.
#include "dataloader/tsv_reader.h"
#include "fuzz/fuzz_common.h"
#include "src/core/error.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  rf::fuzz::MemFile file(data, size);
  if (file.fd < 0) return 0;
  static const rf::data::ColumnSchema criteo = [] {
    rf::data::ColumnSchema s = rf::data::ColumnSchema::criteo();
    s.hash_buckets = {1000};
    return s;
  }();
  static const rf::data::ColumnSchema multi = [] {
    rf::data::ColumnSchema s = rf::data::ColumnSchema::parse({"label", "dense*2", "cat*1", "multi*1"});
    s.encoding = rf::data::TokenEncoding::kString;
    s.hash_buckets = {50};
    return s;
  }();
  for (const rf::data::ColumnSchema* schema : {&criteo, &multi}) {
    for (bool skip : {false, true}) {
      try {
        rf::data::ReaderOptions o;
        o.skip_bad_rows = skip;
        o.block_bytes = 64;  // exercise lines longer than the buffer
        rf::data::TsvReader reader(*schema, {file.path}, o);
        rf::data::Batch b;
        while (reader.next(b, 7)) {
          for (int f = 0; f < b.num_sparse(); ++f) {
            const int64_t* off = b.offsets[f].data<int64_t>();
            if (off[b.size()] != b.indices[f].numel()) __builtin_trap();
            const int64_t* idx = b.indices[f].data<int64_t>();
            for (int64_t i = 0; i < b.indices[f].numel(); ++i)
              if (idx[i] < 0 || idx[i] >= schema->buckets(f)) __builtin_trap();
          }
        }
      } catch (const rf::DataError&) {
      }
    }
  }
  return 0;
}
