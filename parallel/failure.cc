// The job-wide failure path: terminate handler and abort_job, both ending in MPI_Abort.
#include "parallel/failure.h"

#include <mpi.h>

#include <cstdio>
#include <cstdlib>
#include <mutex>

#include "src/core/error.h"

namespace rf {
namespace {

void print_failure(const char* what) {
  std::string id = process_identity();
  std::fprintf(stderr, "recforge: %s%s%s\n", id.c_str(), id.empty() ? "" : ": ", what);
  std::fflush(stderr);
}

[[noreturn]] void mpi_abort(int code) {
  int initialised = 0, finalised = 0;
  MPI_Initialized(&initialised);
  MPI_Finalized(&finalised);
  if (initialised && !finalised) MPI_Abort(MPI_COMM_WORLD, code);
  std::_Exit(code);
}

void on_terminate() {
  std::exception_ptr ex = std::current_exception();
  if (ex) {
    try {
      std::rethrow_exception(ex);
    } catch (const std::exception& e) {
      print_failure(e.what());
    } catch (...) {
      print_failure("unknown exception");
    }
  } else {
    print_failure("std::terminate called without an exception");
  }
  mpi_abort(kExitFailure);
}

}  // namespace

void install_failure_handlers() {
  static std::once_flag once;
  std::call_once(once, [] { std::set_terminate(&on_terminate); });
}

void abort_job(const std::exception& e, int code) {
  if (code < 0) {
    auto* err = dynamic_cast<const Error*>(&e);
    code = err ? err->exit_code() : kExitFailure;
  }
  print_failure(e.what());
  int initialised = 0, finalised = 0;
  MPI_Initialized(&initialised);
  MPI_Finalized(&finalised);
  if (initialised && !finalised) MPI_Abort(MPI_COMM_WORLD, code);
}

}  // namespace rf
