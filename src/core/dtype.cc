// Names and sizes of recforge element types.
#include "src/core/dtype.h"

#include "src/core/error.h"

namespace rf {

size_t dtype_size(DType t) {
  switch (t) {
    case DType::kF32: return 4;
    case DType::kF16: return 2;
    case DType::kBF16: return 2;
    case DType::kI32: return 4;
    case DType::kI64: return 8;
  }
  throw Error("unknown dtype " + std::to_string(static_cast<int>(t)));
}

const char* dtype_name(DType t) {
  switch (t) {
    case DType::kF32: return "fp32";
    case DType::kF16: return "fp16";
    case DType::kBF16: return "bf16";
    case DType::kI32: return "int32";
    case DType::kI64: return "int64";
  }
  return "unknown";
}

DType parse_dtype(std::string_view name) {
  for (DType t : {DType::kF32, DType::kF16, DType::kBF16, DType::kI32, DType::kI64})
    if (name == dtype_name(t)) return t;
  throw ConfigError("unknown dtype '" + std::string(name) + "': expected fp32, fp16, bf16, int32 or int64");
}

}  // namespace rf
