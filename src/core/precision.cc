// Library type mappings for recforge dtypes (see precision.h).
#include "src/core/precision.h"

#include "src/core/error.h"

namespace rf {

Precision parse_precision(std::string_view name) {
  Precision p;
  if (name == "fp32") p.compute = DType::kF32;
  else if (name == "bf16") p.compute = DType::kBF16;
  else if (name == "fp16") p.compute = DType::kF16;
  else throw ConfigError("unknown precision '" + std::string(name) + "': expected fp32, bf16 or fp16");
  return p;
}

MPI_Datatype mpi_type(DType t) {
  switch (t) {
    case DType::kF32: return MPI_FLOAT;
    case DType::kF16: return MPI_UINT16_T;
    case DType::kBF16: return MPI_UINT16_T;
    case DType::kI32: return MPI_INT32_T;
    case DType::kI64: return MPI_INT64_T;
  }
  throw Error("mpi_type: unknown dtype");
}

namespace {
// A 16-bit IEEE-style float type: sign at bit 15, exponent at `mant_bits` with `exp_bits`, bias.
hid_t make_float16_type(size_t exp_bits, size_t mant_bits, size_t bias) {
  hid_t t = H5Tcopy(H5T_IEEE_F32LE);
  H5Tset_fields(t, 15, mant_bits, exp_bits, 0, mant_bits);
  H5Tset_size(t, 2);
  H5Tset_ebias(t, bias);
  return t;
}
}  // namespace

hid_t hdf5_type(DType t) {
  // Created once and kept for the life of the process (HDF5 closes them at exit).
  static const hid_t f16_type = make_float16_type(5, 10, 15);
  static const hid_t bf16_type = make_float16_type(8, 7, 127);
  switch (t) {
    case DType::kF32: return H5T_IEEE_F32LE;
    case DType::kF16: return f16_type;
    case DType::kBF16: return bf16_type;
    case DType::kI32: return H5T_STD_I32LE;
    case DType::kI64: return H5T_STD_I64LE;
  }
  throw Error("hdf5_type: unknown dtype");
}

#if RECFORGE_WITH_CUDA
cudaDataType_t cuda_type(DType t) {
  switch (t) {
    case DType::kF32: return CUDA_R_32F;
    case DType::kF16: return CUDA_R_16F;
    case DType::kBF16: return CUDA_R_16BF;
    case DType::kI32: return CUDA_R_32I;
    case DType::kI64: return CUDA_R_64I;
  }
  throw Error("cuda_type: unknown dtype");
}

ncclDataType_t nccl_type(DType t) {
  switch (t) {
    case DType::kF32: return ncclFloat32;
    case DType::kF16: return ncclFloat16;
    case DType::kBF16: return ncclBfloat16;
    case DType::kI32: return ncclInt32;
    case DType::kI64: return ncclInt64;
  }
  throw Error("nccl_type: unknown dtype");
}
#endif

}  // namespace rf
