// Communicator over MPI for host tensors. fp16/bf16 travel as 16-bit words and are reduced by this
// file's own MPI_Ops, which widen each pair to fp32, add (or compare) and round back once.
#pragma once

#include <mpi.h>

#include "parallel/communicator.h"
#include "parallel/process_group.h"

namespace rf {

class MpiCommunicator final : public Communicator {
 public:
  // Duplicates `comm` (its own context: our collectives never match someone else's messages).
  explicit MpiCommunicator(MPI_Comm comm);

  int rank() const override { return rank_; }
  int size() const override { return size_; }
  Device device() const override { return Device::cpu(); }
  const char* backend() const override { return "mpi"; }
  MPI_Comm comm() const { return comm_.get(); }

  void all_reduce(Tensor& t, ReduceOp op) override;
  std::unique_ptr<CommWork> all_reduce_async(Tensor& t, ReduceOp op) override;
  void broadcast(Tensor& t, int root) override;
  void all_gather(const Tensor& in, Tensor& out) override;
  Tensor all_gather_v(const Tensor& in, std::vector<int64_t>* counts = nullptr) override;
  void reduce_scatter(const Tensor& in, Tensor& out, ReduceOp op) override;
  void all_to_all_v(const Tensor& in, const std::vector<int64_t>& send_counts, Tensor& out,
                    const std::vector<int64_t>& recv_counts) override;
  void barrier() override;

 private:
  MpiCommHandle comm_;
  int rank_ = 0, size_ = 1;
};

// The MPI_Op that reduces `op` over elements of dtype `t` (MPI_SUM/MPI_MAX for fp32 and integers; the
// widening ops for fp16/bf16; kAvg reduces with the sum op and divides afterwards).
MPI_Op mpi_reduce_op_for(DType t, ReduceOp op);
// Divides every element by n in the tensor's own type (the second half of kAvg). Host tensors only.
void divide_in_place(Tensor& t, int n);

}  // namespace rf
