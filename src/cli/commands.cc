// The table of `recforge` subcommands. To add one: declare its handler in commands.h, define it in
// the file that implements it, and add a row here.
#include "src/cli/commands.h"

#include <cstdio>
#include <cstring>

namespace rf::cli {

const std::vector<Command>& commands() {
  static const std::vector<Command> kCommands = {
      {"train", "train a model described by the config (data, model, optimizer, parallelism)", run_train, true},
      {"eval", "evaluate a checkpoint or export on data.test and print loss, AUC and accuracy", run_eval, true},
      {"synth", "write a synthetic click dataset with the config's data layout (for the quickstart)", run_synth, true},
      {"bench", "benchmark the step phases, kernels and collectives on this machine", run_bench, true},
  };
  return kCommands;
}

const Command* find_command(const char* name) {
  for (const Command& c : commands()) {
    if (std::strcmp(c.name, name) == 0) return &c;
  }
  return nullptr;
}

// ==== PLACEHOLDERS: subcommands whose real handler has not landed yet ===========================
// Each says so and fails (exit 1) rather than pretending to work. When you implement one, delete its
// placeholder here and define the handler in your own file (add that file to the recforge target).
namespace {
int not_implemented(const char* name) {
  std::fprintf(stderr, "recforge %s: not implemented yet\n", name);
  return 1;
}
}  // namespace

int run_train(const Config&) { return not_implemented("train"); }
int run_eval(const Config&) { return not_implemented("eval"); }
int run_synth(const Config&) { return not_implemented("synth"); }
int run_bench(const Config&) { return not_implemented("bench"); }
// ==== END PLACEHOLDERS ==========================================================================

}  // namespace rf::cli
