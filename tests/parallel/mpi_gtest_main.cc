// GoogleTest main for tests run under mpirun: every rank runs every test (collectives need all of
// them), only rank 0 prints, and every rank exits with the same status (failed anywhere = failed).
#include <gtest/gtest.h>
#include <mpi.h>

#include "parallel/failure.h"
#include "parallel/process_group.h"

int main(int argc, char** argv) {
  rf::ProcessGroup& pg = rf::ProcessGroup::init(&argc, &argv);
  rf::install_failure_handlers();
  ::testing::InitGoogleTest(&argc, argv);
  if (pg.rank() != 0) {
    // Keep failures visible from every rank, drop the per-test chatter.
    auto& listeners = ::testing::UnitTest::GetInstance()->listeners();
    delete listeners.Release(listeners.default_result_printer());
  }
  int failed = RUN_ALL_TESTS() != 0 ? 1 : 0;
  int any = 0;
  MPI_Allreduce(&failed, &any, 1, MPI_INT, MPI_MAX, pg.world());
  if (any && !failed) std::fprintf(stderr, "rank %d: passed, but another rank failed\n", pg.rank());
  rf::ProcessGroup::finalize();
  return any;
}
