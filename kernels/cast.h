// Conversions between floating dtypes (fp32, fp16, bf16), round to nearest even as dtype.h defines.
#pragma once

#include "src/core/tensor.h"

namespace rf {

// src and dst have the same element count and live on the same device; any pair of floating dtypes.
void cast(const Tensor& src, Tensor& dst);

}  // namespace rf
