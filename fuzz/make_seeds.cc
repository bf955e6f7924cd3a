// Writes the fuzzers' seed inputs into a directory: a few Criteo-format TSV rows and a small valid
// shard of them (Criteo layout, 1000-row tables), so that fuzzing starts from inputs that parse.
#include <cstdio>
#include <fstream>
#include <string>

#include "dataloader/shard_writer.h"
#include "dataloader/tsv_reader.h"

int main(int argc, char** argv) {
  if (argc != 2) {
    std::fprintf(stderr, "usage: make_seeds DIR\n");
    return 2;
  }
  const std::string dir = argv[1];
  std::string rows;
  for (int i = 0; i < 12; ++i) {
    rows += std::to_string(i % 2);
    for (int d = 0; d < 13; ++d) rows += "\t" + (d == i ? std::string() : std::to_string(i * 13 + d - 5));
    for (int c = 0; c < 26; ++c) {
      char tok[16];
      std::snprintf(tok, sizeof tok, "%08x", static_cast<unsigned>(i * 2654435761u + c));
      rows += "\t" + (c == i ? std::string() : std::string(tok));
    }
    rows += "\n";
  }
  std::ofstream(dir + "/criteo.tsv") << rows;
  std::ofstream(dir + "/multi.tsv") << "1\t2\t3\tab\tx,y\n0\t\t-1\t\t\n";
  rf::data::ColumnSchema schema = rf::data::ColumnSchema::criteo();
  schema.hash_buckets = {1000};
  rf::data::Batch all = rf::data::load_all(schema, {dir + "/criteo.tsv"});
  rf::data::write_shard(dir + "/criteo.rfshard", schema, all, 4);
  return 0;
}
