// The process's place in the job: MPI world rank and size, its rank on its node (local rank, from
// MPI_Comm_split_type SHARED), host name, the GPU it owns (one per local rank), and a
// data-parallel x tensor-parallel grid of sub-communicators. A job started without mpirun is a world
// of one (Open MPI singleton init).
#pragma once

#include <memory>
#include <string>

#include <mpi.h>

namespace rf {

// An MPI communicator this process owns (freed on destruction unless MPI is already finalised).
class MpiCommHandle {
 public:
  MpiCommHandle() = default;
  explicit MpiCommHandle(MPI_Comm comm);  // takes ownership
  MPI_Comm get() const { return comm_ ? *comm_ : MPI_COMM_NULL; }
  operator MPI_Comm() const { return get(); }

 private:
  std::shared_ptr<MPI_Comm> comm_;
};

// World = data_parallel x tensor_parallel. Ranks of one tensor-parallel group are consecutive in the
// world (so on one node where possible): tp_rank = rank % tp_size, dp_rank = rank / tp_size. The
// data-parallel group of a rank holds the ranks with its tp_rank.
struct ParallelGrid {
  int tp_size = 1, dp_size = 1;
  int tp_rank = 0, dp_rank = 0;
  MpiCommHandle tensor_parallel;
  MpiCommHandle data_parallel;
};

class ProcessGroup {
 public:
  // Initialises MPI (MPI_Init_thread, asking for MPI_THREAD_MULTIPLE) unless it is already, reads the
  // job's layout, sets the process identity used in error messages and the log rank, and selects this
  // rank's GPU (local_rank % device count) when GPUs exist. Idempotent: later calls return the same
  // group. argc/argv may be null.
  static ProcessGroup& init(int* argc = nullptr, char*** argv = nullptr);
  // The group, initialising it on first use.
  static ProcessGroup& get();
  // MPI_Finalize when this group initialised MPI; idempotent. Call it at the end of main().
  static void finalize();

  int rank() const { return rank_; }
  int world_size() const { return world_size_; }
  int local_rank() const { return local_rank_; }
  int local_size() const { return local_size_; }
  const std::string& host() const { return host_; }
  bool distributed() const { return world_size_ > 1; }
  int cuda_device() const { return cuda_device_; }  // -1 without a GPU
  int thread_level() const { return thread_level_; }  // what MPI_Init_thread provided

  MPI_Comm world() const { return world_.get(); }  // a duplicate of MPI_COMM_WORLD, errors return
  MPI_Comm node() const { return node_.get(); }    // the ranks on this host

  // Throws ConfigError unless tensor_parallel divides the world size.
  ParallelGrid make_grid(int tensor_parallel) const;

 private:
  ProcessGroup() = default;
  int rank_ = 0, world_size_ = 1, local_rank_ = 0, local_size_ = 1;
  int cuda_device_ = -1;
  int thread_level_ = 0;
  bool owns_mpi_ = false;
  std::string host_;
  MpiCommHandle world_, node_;
};

// Refuses a global batch the data-parallel world does not divide, naming both numbers.
// Returns the per-rank batch.
int64_t per_rank_batch(int64_t global_batch, int dp_size);

}  // namespace rf
