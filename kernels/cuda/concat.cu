// CUDA column concat/split and copy_tensors (kernels/concat.h). Up to kMaxParts parts go into one launch
// through a by-value descriptor (kernel parameters, no host-to-device copy of pointers): blockIdx.y picks
// the part, a grid-stride loop over its rows * width elements copies (or adds) with coalesced accesses
// along the row. Pure copies and one fp32 add per element, so the results equal the CPU's bit for bit.
#include <cuda_runtime.h>

#include "kernels/cuda/cuda_common.cuh"
#include "kernels/cuda/cuda_ops.h"
#include "kernels/validate.h"

namespace rf::cuda {

namespace {

constexpr int kMaxParts = 64;  // 64 * 24 bytes stays well inside the 4 KiB kernel-parameter limit
constexpr int kThreads = 256;

struct Parts {
  float* ptr[kMaxParts];   // part i: [rows, width[i]]
  int64_t col0[kMaxParts]; // first column of part i in the wide tensor
  int64_t width[kMaxParts];
};

// wide [rows, wide_width]. concat: wide[r, col0 + k] = part[r, k]. split: part[r, k] = wide[r, col0 + k]
// (+ addend[r, col0 + k]).
template <bool kConcat>
__global__ void columns_kernel(float* __restrict__ wide, const float* __restrict__ addend, Parts parts, int64_t rows,
                               int64_t wide_width) {
  const int p = blockIdx.y;
  const int64_t w = parts.width[p];
  const int64_t n = rows * w;
  float* part = parts.ptr[p];
  const int64_t col0 = parts.col0[p];
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < n;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const int64_t r = i / w, k = i - r * w;
    const int64_t j = r * wide_width + col0 + k;
    if constexpr (kConcat) {
      wide[j] = part[i];
    } else {
      part[i] = addend ? wide[j] + addend[j] : wide[j];
    }
  }
}

template <bool kConcat>
void run(const Tensor& wide, const Tensor* addend, const std::vector<Tensor>& parts, const char* op) {
  RF_CHECK(wide.dim() == 2, op, ": wide tensor is ", shape_str(wide.shape()), ", expected 2-D");
  check_dtype(wide, DType::kF32, op);
  const int64_t rows = wide.size(0);
  int64_t width = 0;
  for (size_t i = 0; i < parts.size(); ++i) {
    const Tensor& p = parts[i];
    RF_CHECK(p.dim() == 2 && p.size(0) == rows, op, ": part ", i, " is ", shape_str(p.shape()), ", expected [", rows,
             ", w]");
    check_dtype(p, DType::kF32, op);
    RF_CHECK(p.device() == wide.device(), op, ": part ", i, " on ", p.device().str(), ", wide tensor on ",
             wide.device().str());
    width += p.size(1);
  }
  check_shape(wide, {rows, width}, op);
  if (addend) {
    check_shape(*addend, wide.shape(), op);
    RF_CHECK(addend->device() == wide.device(), op, ": addend on another device");
  }
  if (rows == 0 || width == 0) return;
  detail::DeviceScope scope(wide);
  int64_t col0 = 0;
  for (size_t first = 0; first < parts.size(); first += kMaxParts) {
    const size_t count = std::min<size_t>(kMaxParts, parts.size() - first);
    Parts d{};
    int64_t max_n = 0;
    for (size_t i = 0; i < count; ++i) {
      const Tensor& p = parts[first + i];
      d.ptr[i] = static_cast<float*>(p.raw());
      d.col0[i] = col0;
      d.width[i] = p.size(1);
      col0 += p.size(1);
      max_n = std::max(max_n, rows * p.size(1));
    }
    // Enough blocks per part to fill the GPU when there are few parts, capped for many.
    const unsigned blocks = detail::grid_for(max_n, kThreads, 2048);
    dim3 grid(blocks, static_cast<unsigned>(count));
    columns_kernel<kConcat><<<grid, kThreads, 0, detail::stream()>>>(
        static_cast<float*>(wide.raw()), addend ? static_cast<const float*>(addend->raw()) : nullptr, d, rows, width);
    detail::check_launch();
  }
}

// Pair p of a copy_tensors launch: units[p] elements of unit[p] bytes (16, 8, 4, 2 or 1: the widest that
// both pointers' alignment and the byte count allow).
struct Copies {
  const char* src[kMaxParts];
  char* dst[kMaxParts];
  int64_t units[kMaxParts];
  int32_t unit[kMaxParts];
};

template <class U>
__device__ void copy_units(const char* src, char* dst, int64_t n) {
  const U* s = reinterpret_cast<const U*>(src);
  U* d = reinterpret_cast<U*>(dst);
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < n;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x)
    d[i] = s[i];
}

__global__ void copies_kernel(Copies c) {
  const int p = blockIdx.y;
  switch (c.unit[p]) {
    case 16: copy_units<uint4>(c.src[p], c.dst[p], c.units[p]); break;
    case 8: copy_units<uint2>(c.src[p], c.dst[p], c.units[p]); break;
    case 4: copy_units<uint32_t>(c.src[p], c.dst[p], c.units[p]); break;
    case 2: copy_units<uint16_t>(c.src[p], c.dst[p], c.units[p]); break;
    default: copy_units<uint8_t>(c.src[p], c.dst[p], c.units[p]); break;
  }
}

}  // namespace

void copy_tensors(const std::vector<Tensor>& src, const std::vector<Tensor>& dst) {
  checks::copy_tensors(src, dst);
  if (src.empty()) return;
  detail::DeviceScope scope(src[0]);
  Copies c{};
  int count = 0;
  int64_t most = 0;
  auto flush = [&]() {
    if (count == 0) return;
    copies_kernel<<<dim3(detail::grid_for(most, kThreads, 2048), static_cast<unsigned>(count)), kThreads, 0,
                    detail::stream()>>>(c);
    detail::check_launch();
    c = Copies{};
    count = 0;
    most = 0;
  };
  for (size_t i = 0; i < src.size(); ++i) {
    const size_t bytes = src[i].nbytes();
    if (bytes == 0 || src[i].raw() == dst[i].raw()) continue;
    int unit = 16;
    while (unit > 1 && (bytes % static_cast<size_t>(unit) != 0 || detail::alignment_of(src[i].raw()) < unit ||
                        detail::alignment_of(dst[i].raw()) < unit))
      unit /= 2;
    c.src[count] = static_cast<const char*>(src[i].raw());
    c.dst[count] = static_cast<char*>(dst[i].raw());
    c.unit[count] = unit;
    c.units[count] = static_cast<int64_t>(bytes) / unit;
    most = std::max(most, c.units[count]);
    if (++count == kMaxParts) flush();
  }
  flush();
}

void concat_columns(const std::vector<Tensor>& parts, Tensor& out) { run<true>(out, nullptr, parts, "concat_columns"); }

void split_columns(const Tensor& in, const Tensor* addend, const std::vector<Tensor>& parts) {
  run<false>(in, addend, parts, "split_columns");
}

}  // namespace rf::cuda
