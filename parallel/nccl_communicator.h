// Communicator over NCCL for device tensors. Kept behind a factory so that no CUDA or NCCL header
// leaks into code that includes this one; the implementation is the only translation unit that
// includes nccl.h.
#pragma once

#include <memory>

#include <mpi.h>

#include "parallel/communicator.h"

namespace rf {

struct NcclOptions {
  // The stream the caller's kernels run on (a cudaStream_t); null means the device's compute stream
  // (src/core/allocator.h), where recforge's kernels run. Collectives wait for work already enqueued there (an event) and
  // work enqueued there afterwards waits for them, so no device-wide synchronisation is needed.
  void* compute_stream = nullptr;
  // A collective that has not completed after this long (a dead or stuck peer), or an asynchronous
  // NCCL error, makes the watchdog abort the NCCL communicator; the next call on this communicator
  // (or the wait in progress) throws BackendError naming rank and host. RECFORGE_NCCL_TIMEOUT_S
  // overrides it.
  double timeout_s = 300.0;
};

// True when built with CUDA and a GPU is visible.
bool nccl_available();

// Collective over the ranks of `bootstrap` on CUDA device `device`: rank 0 of `bootstrap` creates the
// ncclUniqueId and broadcasts it over MPI; every rank joins with ncclCommInitRank. Collectives run
// on the communicator's own non-blocking stream. Throws BackendError without CUDA or a device.
std::unique_ptr<Communicator> make_nccl_communicator(MPI_Comm bootstrap, int device, NcclOptions options = {});

}  // namespace rf
