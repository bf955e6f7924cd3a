// Ending a multi-rank job when one rank fails: a rank that throws must not leave the others waiting
// forever inside a collective. abort_job prints the failing rank's message and calls MPI_Abort, which
// makes mpirun (or srun) kill every rank of the job within seconds.
#pragma once

#include <exception>

namespace rf {

// Installs a std::terminate handler that prints the pending exception (with rank and host) and
// calls MPI_Abort(MPI_COMM_WORLD, 1): an exception escaping a thread, or main(), ends the whole job.
// Call it once, after ProcessGroup::init. Idempotent.
void install_failure_handlers();

// For main()'s catch block when world > 1: prints "recforge: <rank r on host>: <what>" to stderr and
// calls MPI_Abort(MPI_COMM_WORLD, code); code < 0 means the exception's exit code (rf::Error) or 1.
// Returns only when MPI is not initialised (then the caller returns its exit code as usual).
void abort_job(const std::exception& e, int code = -1);

}  // namespace rf
