// The subcommands of `recforge`: one table (commands.cc) of name, help and handler, from which the
// dispatcher in main.cc and `recforge --help` are both built. Each handler lives in its own file
// next to the code it drives and receives the fully validated config.
#pragma once

#include <vector>

#include "src/config/config.h"

namespace rf::cli {

using CommandHandler = int (*)(const Config& cfg);  // returns the process exit code

struct Command {
  const char* name;
  const char* help;          // one line, shown by `recforge --help`
  CommandHandler handler;
  bool takes_config;         // accepts --config FILE and --section.key=value overrides
  const char* positional_key;  // a leading bare word sets this key (`recforge bench dlrm`), or nullptr
};

const std::vector<Command>& commands();
const Command* find_command(const char* name);  // nullptr when unknown

// Handlers, each defined next to the code it drives: src/train/commands.cc (train, eval, synth) and
// src/train/bench_command.cc (bench).
int run_train(const Config& cfg);
int run_eval(const Config& cfg);
int run_synth(const Config& cfg);
int run_bench(const Config& cfg);
// `recforge bench comm` (src/cli/bench_comm.cc): collective bandwidth, MPI and NCCL; run under mpirun.
int run_bench_comm(const Config& cfg);
// `recforge preprocess` (src/cli/preprocess_command.cc): tsv splits -> binary shards in data.shard_dir.
int run_preprocess(const Config& cfg);
// `recforge bench loader` (src/cli/bench_loader.cc): tsv parsing, preprocessing and shard reading
// rows/s next to a raw read of the shard bytes and the DLRM trainer's consumption.
int run_bench_loader(const Config& cfg);
// `recforge bench sharding` (src/cli/bench_sharding.cc): all-to-all time per step and memory per rank of
// each embedding sharding mode; run under mpirun.
int run_bench_sharding(const Config& cfg);
// `recforge export` and `recforge predict` (src/serve/commands.cc): the serving export (HDF5 or ONNX)
// of trained parameters, and CPU scoring of TSV rows with an export.
int run_export(const Config& cfg);
int run_predict(const Config& cfg);

}  // namespace rf::cli
