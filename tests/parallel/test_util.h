// Helpers shared by the multi-rank tests: small-integer tensors of any dtype (exact in every dtype
// for |x| <= 256) and the communicator under test for a backend name.
#pragma once

#include <gtest/gtest.h>
#include <mpi.h>

#include <memory>
#include <string>
#include <vector>

#include "parallel/communicator.h"
#include "parallel/mpi_communicator.h"
#include "parallel/nccl_communicator.h"
#include "parallel/process_group.h"
#include "src/core/allocator.h"

namespace rf::test {

inline const std::vector<DType> kAllDTypes = {DType::kF32, DType::kF16, DType::kBF16, DType::kI32, DType::kI64};

// A host tensor of `dtype` holding `values` (small integers or halves: exact in every dtype).
inline Tensor make_tensor(const std::vector<double>& values, DType dtype, Device device = Device::cpu()) {
  int64_t n = static_cast<int64_t>(values.size());
  Tensor t = Tensor::empty({n}, dtype);
  for (int64_t i = 0; i < n; ++i) {
    double v = values[static_cast<size_t>(i)];
    switch (dtype) {
      case DType::kF32: t.data<float>()[i] = static_cast<float>(v); break;
      case DType::kF16: t.data<f16>()[i] = to_f16(static_cast<float>(v)); break;
      case DType::kBF16: t.data<bf16>()[i] = to_bf16(static_cast<float>(v)); break;
      case DType::kI32: t.data<int32_t>()[i] = static_cast<int32_t>(v); break;
      case DType::kI64: t.data<int64_t>()[i] = static_cast<int64_t>(v); break;
    }
  }
  return device.is_cpu() ? t : t.to(device);
}

inline std::vector<double> read_tensor(const Tensor& t_any) {
  Tensor t = t_any.device().is_cpu() ? t_any : t_any.to(Device::cpu());
  std::vector<double> out(static_cast<size_t>(t.numel()));
  for (int64_t i = 0; i < t.numel(); ++i) {
    double& v = out[static_cast<size_t>(i)];
    switch (t.dtype()) {
      case DType::kF32: v = t.data<float>()[i]; break;
      case DType::kF16: v = to_f32(t.data<f16>()[i]); break;
      case DType::kBF16: v = to_f32(t.data<bf16>()[i]); break;
      case DType::kI32: v = t.data<int32_t>()[i]; break;
      case DType::kI64: v = static_cast<double>(t.data<int64_t>()[i]); break;
    }
  }
  return out;
}

// True on every rank or on none: NCCL runs only when each rank of the node has a GPU of its own.
inline bool nccl_usable() {
  ProcessGroup& pg = ProcessGroup::get();
  int ok = nccl_available() && pg.local_size() <= cuda_device_count() ? 1 : 0;
  int all = 0;
  MPI_Allreduce(&ok, &all, 1, MPI_INT, MPI_MIN, pg.world());
  return all == 1;
}

// One communicator per backend for the whole test binary (creating an NCCL communicator is slow).
inline Communicator* communicator_for(const std::string& backend) {
  ProcessGroup& pg = ProcessGroup::get();
  if (backend == "mpi") {
    static MpiCommunicator mpi(pg.world());
    return &mpi;
  }
  static bool usable = nccl_usable();
  if (!usable) return nullptr;
  static std::unique_ptr<Communicator> nccl = make_nccl_communicator(pg.world(), pg.cuda_device());
  return nccl.get();
}

#define RF_COMM_OR_SKIP(var, backend)                                                            \
  Communicator* var = ::rf::test::communicator_for(backend);                                     \
  if (!var) GTEST_SKIP() << "NCCL needs a CUDA device per rank (none visible, or fewer GPUs than " \
                            "ranks on this node)";

}  // namespace rf::test
