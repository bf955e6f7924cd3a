// The one place that maps recforge dtypes to the type enums of the libraries it talks to: cuBLAS/CUDA
// (cudaDataType_t), NCCL (ncclDataType_t), MPI (MPI_Datatype) and HDF5 (hid_t), plus the compute
// policy (storage type of activations, fp32 for master weights, optimizer state, loss and reductions).
#pragma once

#include <mpi.h>
#include <hdf5.h>

#include "src/core/dtype.h"

#if RECFORGE_WITH_CUDA
#include <library_types.h>
#include <nccl.h>
#endif

namespace rf {

// What the config's `[train] precision` selects. Master weights, optimizer state, the loss and every
// reduction stay fp32 in all three; only GEMM inputs and activations change type.
struct Precision {
  DType compute = DType::kF32;          // activations and GEMM operands
  DType master = DType::kF32;           // always fp32
  bool needs_loss_scaling() const { return compute == DType::kF16; }
};
Precision parse_precision(std::string_view name);  // "fp32", "bf16", "fp16"

// MPI has no 16-bit float types: fp16/bf16 travel as MPI_UINT16_T, and reductions over them use the
// Communicator's own MPI_Op that widens to fp32. `mpi_type` never returns a type that would make MPI
// add raw bit patterns: callers reducing 16-bit data must use `mpi_reduce_op_for`.
MPI_Datatype mpi_type(DType t);

// HDF5 file types. fp16 is written as a 16-bit IEEE float (h5py reads it as numpy float16); bf16 as a
// 16-bit float with an 8-bit exponent, which h5py cannot map, so exports store bf16 tables as fp32.
hid_t hdf5_type(DType t);

#if RECFORGE_WITH_CUDA
cudaDataType_t cuda_type(DType t);
ncclDataType_t nccl_type(DType t);
#endif

}  // namespace rf
