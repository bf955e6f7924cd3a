// CPU column concat/split (kernels/concat.h): row-parallel memcpy, or one add per element for the
// split with an addend. The reference the CUDA version is tested against.
#include <cstring>

#include "kernels/cpu/cpu_ops.h"
#include "kernels/validate.h"

namespace rf::cpu {

namespace {
// Column offset of each part in the wide tensor, checking shapes on the way; returns the total width.
int64_t column_layout(const std::vector<Tensor>& parts, int64_t rows, std::vector<int64_t>& col0, const char* op) {
  col0.assign(parts.size() + 1, 0);
  for (size_t i = 0; i < parts.size(); ++i) {
    const Tensor& p = parts[i];
    RF_CHECK(p.dim() == 2 && p.size(0) == rows, op, ": part ", i, " is ", shape_str(p.shape()), ", expected [",
             rows, ", w]");
    check_dtype(p, DType::kF32, op);
    col0[i + 1] = col0[i] + p.size(1);
  }
  return col0.back();
}
}  // namespace

void concat_columns(const std::vector<Tensor>& parts, Tensor& out) {
  RF_CHECK(out.dim() == 2, "concat_columns: out is ", shape_str(out.shape()), ", expected 2-D");
  check_dtype(out, DType::kF32, "concat_columns: out");
  const int64_t rows = out.size(0);
  std::vector<int64_t> col0;
  const int64_t width = column_layout(parts, rows, col0, "concat_columns");
  check_shape(out, {rows, width}, "concat_columns: out");
  float* dst = out.data<float>();
  for (size_t i = 0; i < parts.size(); ++i) {
    const float* src = parts[i].data<float>();
    const int64_t w = parts[i].size(1);
    const size_t bytes = static_cast<size_t>(w) * sizeof(float);
#pragma omp parallel for schedule(static) if (rows * w > (1 << 15))
    for (int64_t r = 0; r < rows; ++r) std::memcpy(dst + r * width + col0[i], src + r * w, bytes);
  }
}

void split_columns(const Tensor& in, const Tensor* addend, const std::vector<Tensor>& parts) {
  RF_CHECK(in.dim() == 2, "split_columns: in is ", shape_str(in.shape()), ", expected 2-D");
  check_dtype(in, DType::kF32, "split_columns: in");
  const int64_t rows = in.size(0);
  std::vector<int64_t> col0;
  const int64_t width = column_layout(parts, rows, col0, "split_columns");
  check_shape(in, {rows, width}, "split_columns: in");
  const float* src = in.data<float>();
  const float* add = nullptr;
  if (addend) {
    check_shape(*addend, in.shape(), "split_columns: addend");
    add = addend->data<float>();
  }
  for (size_t i = 0; i < parts.size(); ++i) {
    float* dst = parts[i].data<float>();
    const int64_t w = parts[i].size(1);
#pragma omp parallel for schedule(static) if (rows * w > (1 << 15))
    for (int64_t r = 0; r < rows; ++r) {
      const float* s = src + r * width + col0[i];
      float* d = dst + r * w;
      if (add) {
        const float* a = add + r * width + col0[i];
        for (int64_t k = 0; k < w; ++k) d[k] = s[k] + a[k];
      } else {
        std::memcpy(d, s, static_cast<size_t>(w) * sizeof(float));
      }
    }
  }
}

void copy_tensors(const std::vector<Tensor>& src, const std::vector<Tensor>& dst) {
  checks::copy_tensors(src, dst);
  for (size_t i = 0; i < src.size(); ++i)
    if (src[i].raw() != dst[i].raw()) std::memcpy(dst[i].raw(), src[i].raw(), src[i].nbytes());
}

}  // namespace rf::cpu
