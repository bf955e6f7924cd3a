// The table of `recforge` subcommands. To add one: declare its handler in commands.h, define it in
// the file that implements it, and add a row here.
#include "src/cli/commands.h"

#include <cstring>

namespace rf::cli {

const std::vector<Command>& commands() {
  static const std::vector<Command> kCommands = {
      {"train", "train a model described by the config (data, model, optimizer, parallelism)", run_train, true, nullptr},
      {"eval", "evaluate a checkpoint or export on data.test and print loss, AUC and accuracy", run_eval, true, nullptr},
      {"synth", "write a synthetic click dataset with the config's data layout (for the quickstart)", run_synth, true, nullptr},
      {"preprocess", "convert data.train/validation/test to binary shards: `recforge preprocess --config FILE --out DIR`",
       run_preprocess, true, nullptr},
      {"export", "write the serving export (HDF5 or ONNX) of trained parameters: `recforge export --config FILE --export.checkpoint=DIR`",
       run_export, true, nullptr},
      {"predict", "score TSV rows with an export: `recforge predict --predict.model=m.h5 --predict.input=rows.tsv --predict.out=scores.txt`",
       run_predict, true, nullptr},
      {"bench", "benchmark training throughput on generated batches: `recforge bench dlrm --config FILE`", run_bench,
       true, "bench.target"},
  };
  return kCommands;
}

const Command* find_command(const char* name) {
  for (const Command& c : commands()) {
    if (std::strcmp(c.name, name) == 0) return &c;
  }
  return nullptr;
}


}  // namespace rf::cli
