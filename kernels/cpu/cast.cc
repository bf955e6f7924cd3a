// CPU conversions between fp32, fp16 and bf16 with src/core/dtype.h's round-to-nearest-even scalar
// functions. fp16 <-> bf16 goes through fp32, which holds every value of both exactly, so the result
// is rounded once.
#include <cstring>

#include "kernels/cpu/cpu_ops.h"
#include "kernels/cpu/cpu_util.h"
#include "kernels/validate.h"

namespace rf::cpu {
namespace {

using detail::load_f32;
using detail::store_as;

template <class S, class D>
void convert(const Tensor& src, Tensor& dst) {
  const S* s = src.data<S>();
  D* d = dst.data<D>();
  const int64_t n = src.numel();
#pragma omp parallel for simd schedule(static)
  for (int64_t i = 0; i < n; ++i) d[i] = store_as<D>(load_f32(s[i]));
}

template <class S>
void convert_from(const Tensor& src, Tensor& dst) {
  switch (dst.dtype()) {
    case DType::kF32: return convert<S, float>(src, dst);
    case DType::kF16: return convert<S, f16>(src, dst);
    case DType::kBF16: return convert<S, bf16>(src, dst);
    default: break;
  }
}

}  // namespace

void cast(const Tensor& src, Tensor& dst) {
  checks::cast(src, dst);
  if (src.dtype() == dst.dtype()) {
    if (src.raw() != dst.raw()) std::memcpy(dst.raw(), src.raw(), src.nbytes());
    return;
  }
  switch (src.dtype()) {
    case DType::kF32: return convert_from<float>(src, dst);
    case DType::kF16: return convert_from<f16>(src, dst);
    case DType::kBF16: return convert_from<bf16>(src, dst);
    default: break;
  }
}

}  // namespace rf::cpu
