// A small multi-rank program for the failure test: every rank loops over all-reduces; rank 1 fails
// at iteration 3 while the others wait inside the next collective. Modes:
//   catch      rank 1 throws, main() catches and calls abort_job (what recforge's main does)
//   terminate  the exception escapes main(): the terminate handler ends the job
//   thread     a worker thread on rank 1 throws: the terminate handler ends the job
// Exits 0 only if the loop finishes, which it must not when world > 1.
#include <cstdio>
#include <cstring>
#include <thread>

#include "parallel/failure.h"
#include "parallel/mpi_communicator.h"
#include "parallel/process_group.h"

namespace {

int loop(rf::Communicator& comm, const char* mode) {
  rf::Tensor t = rf::Tensor::zeros({1024}, rf::DType::kF32);
  for (int i = 0; i < 100000; ++i) {
    if (comm.rank() == 1 && i == 3) {
      if (std::strcmp(mode, "thread") == 0) {
        std::thread([] { throw rf::BackendError("out of memory in a prefetch worker (injected)"); }).join();
      }
      throw rf::DataError("train.tsv:1042: expected 40 tab-separated fields, got 39 (injected)");
    }
    comm.all_reduce(t, rf::ReduceOp::kSum);
  }
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  rf::ProcessGroup& pg = rf::ProcessGroup::init(&argc, &argv);
  rf::install_failure_handlers();
  const char* mode = argc > 1 ? argv[1] : "catch";
  rf::MpiCommunicator comm(pg.world());
  if (std::strcmp(mode, "catch") == 0) {
    try {
      loop(comm, mode);
    } catch (const std::exception& e) {
      rf::abort_job(e);
      return 1;
    }
  } else {
    loop(comm, mode);
  }
  rf::ProcessGroup::finalize();
  return 0;
}
