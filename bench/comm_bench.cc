// comm_bench: `recforge bench comm` as its own program, for running under mpirun before (or without)
// the recforge command: `mpirun -np 2 build/comm_bench [--bench.steps=N] [--bench.warmup=N]`.
#include <cstdio>
#include <string>
#include <vector>

#include "parallel/failure.h"
#include "parallel/process_group.h"
#include "src/cli/commands.h"
#include "src/config/config.h"

int main(int argc, char** argv) {
  rf::ProcessGroup& pg = rf::ProcessGroup::init(&argc, &argv);
  rf::install_failure_handlers();
  try {
    std::vector<std::string> overrides(argv + 1, argv + argc);
    overrides.push_back("--bench.target=comm");
    int rc = rf::cli::run_bench_comm(rf::Config::load("", overrides));
    rf::ProcessGroup::finalize();
    return rc;
  } catch (const std::exception& e) {
    if (pg.distributed()) rf::abort_job(e);
    std::fprintf(stderr, "comm_bench: %s\n", e.what());
    return 1;
  }
}
