// MPI initialisation, node-local ranks, GPU selection and the data x tensor-parallel grid.
#include "parallel/process_group.h"

#include <unistd.h>

#include <climits>
#include <mutex>

#include "src/core/allocator.h"
#include "src/core/error.h"
#include "src/core/log.h"

#if RECFORGE_WITH_CUDA
#include <cuda_runtime.h>
#endif

#if defined(__SANITIZE_ADDRESS__)
// LeakSanitizer is off in every process that links the process group (and so may start Open MPI):
// Open MPI, PMIx and hwloc keep start-up allocations, partly from components they dlopen and unload,
// that LSan can neither free nor attribute to a library to suppress. AddressSanitizer's checks stay
// on everywhere, and the binaries that never start MPI (the kernel, data, config, io, optimizer and
// metrics tests) keep leak checking.
extern "C" int __lsan_is_turned_off() { return 1; }
#endif

namespace rf {
namespace {

bool mpi_finalized() {
  int done = 0;
  MPI_Finalized(&done);
  return done != 0;
}

std::mutex g_init_mutex;
ProcessGroup* g_group = nullptr;

}  // namespace

MpiCommHandle::MpiCommHandle(MPI_Comm comm)
    : comm_(new MPI_Comm(comm), [](MPI_Comm* c) {
        if (*c != MPI_COMM_NULL && !mpi_finalized()) MPI_Comm_free(c);
        delete c;
      }) {}

ProcessGroup& ProcessGroup::init(int* argc, char*** argv) {
  std::lock_guard<std::mutex> lock(g_init_mutex);
  if (g_group) return *g_group;
  auto* pg = new ProcessGroup();  // lives until exit: communicators borrow its MPI_Comms
  int initialised = 0;
  MPI_Initialized(&initialised);
  if (!initialised) {
    RF_CHECK(!mpi_finalized(), "ProcessGroup::init after MPI_Finalize");
    // MULTIPLE: prefetch threads or the NCCL watchdog may end the job (MPI_Abort) off the main thread.
    if (MPI_Init_thread(argc, argv, MPI_THREAD_MULTIPLE, &pg->thread_level_) != MPI_SUCCESS)
      throw BackendError("MPI_Init_thread failed");
    pg->owns_mpi_ = true;
  } else {
    MPI_Query_thread(&pg->thread_level_);
  }
  // Errors come back as codes (RF_CHECK_MPI turns them into exceptions naming rank and host) rather
  // than killing the process with MPI's generic message.
  MPI_Comm_set_errhandler(MPI_COMM_WORLD, MPI_ERRORS_RETURN);
  MPI_Comm world;
  RF_CHECK_MPI(MPI_Comm_dup(MPI_COMM_WORLD, &world));
  pg->world_ = MpiCommHandle(world);
  RF_CHECK_MPI(MPI_Comm_rank(world, &pg->rank_));
  RF_CHECK_MPI(MPI_Comm_size(world, &pg->world_size_));
  MPI_Comm node;
  RF_CHECK_MPI(MPI_Comm_split_type(world, MPI_COMM_TYPE_SHARED, pg->rank_, MPI_INFO_NULL, &node));
  pg->node_ = MpiCommHandle(node);
  RF_CHECK_MPI(MPI_Comm_rank(node, &pg->local_rank_));
  RF_CHECK_MPI(MPI_Comm_size(node, &pg->local_size_));

  char host[256] = {};
  gethostname(host, sizeof(host) - 1);
  pg->host_ = host;
  if (pg->world_size_ > 1) set_process_identity(pg->rank_, pg->host_);
  set_log_rank(pg->rank_);

  int gpus = cuda_device_count();
  if (gpus > 0) {
    // One GPU per local rank. When the launcher already narrowed CUDA_VISIBLE_DEVICES to one GPU per
    // rank, gpus == 1 and every rank takes device 0.
    pg->cuda_device_ = pg->local_rank_ % gpus;
    if (pg->local_size_ > gpus)
      log_warn(pg->local_size_, " ranks on ", pg->host_, " share ", gpus, " GPU(s)");
#if RECFORGE_WITH_CUDA
    RF_CHECK_CUDA(cudaSetDevice(pg->cuda_device_));
#endif
  }
  g_group = pg;
  return *pg;
}

ProcessGroup& ProcessGroup::get() { return g_group ? *g_group : init(); }

void ProcessGroup::finalize() {
  std::lock_guard<std::mutex> lock(g_init_mutex);
  if (!g_group || !g_group->owns_mpi_ || mpi_finalized()) return;
  g_group->world_ = MpiCommHandle();
  g_group->node_ = MpiCommHandle();
  MPI_Finalize();
}

ParallelGrid ProcessGroup::make_grid(int tensor_parallel) const {
  if (tensor_parallel < 1 || world_size_ % tensor_parallel != 0)
    throw ConfigError("[parallel] tensor_parallel = " + std::to_string(tensor_parallel) +
                      " does not divide the world size " + std::to_string(world_size_));
  ParallelGrid g;
  g.tp_size = tensor_parallel;
  g.dp_size = world_size_ / tensor_parallel;
  g.tp_rank = rank_ % tensor_parallel;
  g.dp_rank = rank_ / tensor_parallel;
  MPI_Comm tp, dp;
  RF_CHECK_MPI(MPI_Comm_split(world(), g.dp_rank, g.tp_rank, &tp));
  RF_CHECK_MPI(MPI_Comm_split(world(), g.tp_rank, g.dp_rank, &dp));
  g.tensor_parallel = MpiCommHandle(tp);
  g.data_parallel = MpiCommHandle(dp);
  return g;
}

int64_t per_rank_batch(int64_t global_batch, int dp_size) {
  if (dp_size < 1 || global_batch % dp_size != 0)
    throw ConfigError("[train] batch_size = " + std::to_string(global_batch) +
                      " is not divisible by the " + std::to_string(dp_size) +
                      " data-parallel ranks; choose a multiple of " + std::to_string(dp_size));
  return global_batch / dp_size;
}

}  // namespace rf
