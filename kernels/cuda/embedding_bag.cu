// CUDA embedding bags. Forward: a group of 1-32 lanes pools one bag (sized to the row so that a
// dim-16 fp32 row takes 4 lanes and a dim-128 one 32), many bags per block; each lane reads 16 bytes
// of a row at a time (coalesced across the group) with two rows in flight, accumulating in fp32.
// Backward: cub radix sort of the lookups by row (stable: bags stay ascending within a row), run-length
// encoding into unique rows, and one lane group per unique row summing its bags' gradient rows in that
// fixed order: no atomics, so the result is bit-reproducible.
#include <cuda_runtime.h>

#include <algorithm>
#include <atomic>
#include <cub/cub.cuh>
#include <limits>
#include <vector>

#include "kernels/cuda/cuda_common.cuh"
#include "kernels/cuda/cuda_ops.h"
#include "kernels/cuda/embedding_internal.h"
#include "kernels/validate.h"

namespace rf::cuda {
namespace {

using detail::load_f32;
using detail::load_vec;

constexpr int kThreads = 256;
std::atomic<bool> g_bounds_checks{true};

// ---- validation ------------------------------------------------------------------------------------
// flags[0]: lowest bag whose offsets are bad (offsets[0] != 0, decreasing, or offsets[batch] != nnz);
// flags[1]: lowest position holding an index outside [0, rows). Both start at INT64_MAX.
__global__ void validate_kernel(const int64_t* __restrict__ ind, const int64_t* __restrict__ off, int64_t batch,
                                int64_t nnz, int64_t rows, unsigned long long* flags) {
  const int64_t stride = static_cast<int64_t>(gridDim.x) * blockDim.x;
  const int64_t start = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  for (int64_t b = start; b <= batch; b += stride) {
    const bool bad = (b == 0 && off[0] != 0) || (b == batch && off[batch] != nnz) || (b < batch && off[b + 1] < off[b]);
    if (bad) atomicMin(&flags[0], static_cast<unsigned long long>(b));
  }
  for (int64_t k = start; k < nnz; k += stride) {
    const int64_t i = ind[k];
    if (i < 0 || i >= rows) atomicMin(&flags[1], static_cast<unsigned long long>(k));
  }
}

void validate(const char* op, const Tensor& indices, const Tensor& offsets, int64_t batch, int64_t rows) {
  const int64_t nnz = indices.numel();
  Tensor flags = Tensor::empty({2}, DType::kI64, indices.device());
  const unsigned long long init[2] = {~0ull >> 1, ~0ull >> 1};
  RF_CHECK_CUDA(cudaMemcpyAsync(flags.raw(), init, sizeof(init), cudaMemcpyHostToDevice, detail::stream()));
  validate_kernel<<<detail::grid_for(std::max(nnz, batch + 1), kThreads, 4096), kThreads, 0, detail::stream()>>>(
      indices.data<int64_t>(), offsets.data<int64_t>(), batch, nnz, rows,
      static_cast<unsigned long long*>(flags.raw()));
  detail::check_launch();
  const std::vector<int64_t> f = flags.to_vector<int64_t>();  // synchronises
  constexpr int64_t kNone = std::numeric_limits<int64_t>::max();
  if (f[0] == kNone && f[1] == kNone) return;
  // Error path only: bring the offsets (and the bad index) to the host to name them as the CPU op does.
  const std::vector<int64_t> off = offsets.to_vector<int64_t>();
  const std::string o(op);
  if (f[0] != kNone) {
    const int64_t b = f[0];
    if (b == 0 && off[0] != 0) throw DataError(o + ": offsets[0] is " + std::to_string(off[0]) + ", expected 0");
    if (b < batch)
      throw DataError(o + ": offsets decrease at bag " + std::to_string(b) + " (" + std::to_string(off[b]) + " then " +
                      std::to_string(off[b + 1]) + ")");
    throw DataError(o + ": offsets[" + std::to_string(batch) + "] is " + std::to_string(off[batch]) +
                    ", expected the number of indices " + std::to_string(nnz));
  }
  const int64_t k = f[1];
  int64_t index = 0;
  copy_bytes(&index, Device::cpu(), indices.data<int64_t>() + k, indices.device(), sizeof(index));
  const int64_t bag = std::upper_bound(off.begin(), off.end(), k) - off.begin() - 1;
  throw DataError(o + ": bag " + std::to_string(bag) + " holds index " + std::to_string(index) + " (position " +
                  std::to_string(k) + " of indices), outside the table's rows [0, " + std::to_string(rows) + ")");
}

// ---- forward ---------------------------------------------------------------------------------------
// out[b, :] = pool(table[ind[k], :] for k in [off[b], off[b+1])). Lanes of a group split the row into
// V-element pieces; a pass covers lanes * V elements.
template <class T, int V>
__global__ void __launch_bounds__(kThreads) forward_kernel(const T* __restrict__ table,
                                                           const int64_t* __restrict__ ind,
                                                           const int64_t* __restrict__ off, int64_t batch,
                                                           int64_t dim, int lanes, bool mean,
                                                           float* __restrict__ out) {
  const int groups_per_block = kThreads / lanes;
  const int lane = threadIdx.x % lanes;
  const int64_t bag = static_cast<int64_t>(blockIdx.x) * groups_per_block + threadIdx.x / lanes;
  if (bag >= batch) return;
  const int64_t begin = off[bag], end = off[bag + 1];
  const float scale = (mean && end > begin) ? 1.0f / static_cast<float>(end - begin) : 1.0f;
  for (int64_t d0 = static_cast<int64_t>(lane) * V; d0 < dim; d0 += static_cast<int64_t>(lanes) * V) {
    float acc[V];
#pragma unroll
    for (int i = 0; i < V; ++i) acc[i] = 0.0f;
    int64_t k = begin;
    // Two rows per iteration: both loads are issued before either is added.
    for (; k + 1 < end; k += 2) {
      float a[V], b[V];
      load_vec<T, V>(table + ind[k] * dim + d0, a);
      load_vec<T, V>(table + ind[k + 1] * dim + d0, b);
#pragma unroll
      for (int i = 0; i < V; ++i) acc[i] += a[i];
#pragma unroll
      for (int i = 0; i < V; ++i) acc[i] += b[i];
    }
    if (k < end) {
      float a[V];
      load_vec<T, V>(table + ind[k] * dim + d0, a);
#pragma unroll
      for (int i = 0; i < V; ++i) acc[i] += a[i];
    }
    float* o = out + bag * dim + d0;
    if constexpr (V == 4) {
      *reinterpret_cast<float4*>(o) = make_float4(acc[0] * scale, acc[1] * scale, acc[2] * scale, acc[3] * scale);
    } else if constexpr (V == 8) {
      reinterpret_cast<float4*>(o)[0] = make_float4(acc[0] * scale, acc[1] * scale, acc[2] * scale, acc[3] * scale);
      reinterpret_cast<float4*>(o)[1] = make_float4(acc[4] * scale, acc[5] * scale, acc[6] * scale, acc[7] * scale);
    } else {
#pragma unroll
      for (int i = 0; i < V; ++i) o[i] = acc[i] * scale;
    }
  }
}

template <class T>
void launch_forward(const Tensor& table, const Tensor& indices, const Tensor& offsets, int64_t batch, bool mean,
                    Tensor& out) {
  const int64_t dim = table.size(1);
  constexpr int kVec = 16 / sizeof(T);
  // 16-byte pieces need every row (table and out) to start on a 16-byte boundary.
  const bool vec = dim % kVec == 0 && detail::alignment_of(table.raw()) >= 16 && detail::alignment_of(out.raw()) >= 16;
  const int lanes = detail::lanes_for(dim, vec ? kVec : 1);
  const int64_t groups = kThreads / lanes;
  const unsigned grid = static_cast<unsigned>((batch + groups - 1) / groups);
  const T* tp = static_cast<const T*>(table.raw());
  if (vec)
    forward_kernel<T, kVec><<<grid, kThreads, 0, detail::stream()>>>(
        tp, indices.data<int64_t>(), offsets.data<int64_t>(), batch, dim, lanes, mean, out.data<float>());
  else
    forward_kernel<T, 1><<<grid, kThreads, 0, detail::stream()>>>(
        tp, indices.data<int64_t>(), offsets.data<int64_t>(), batch, dim, lanes, mean, out.data<float>());
  detail::check_launch();
}

// ---- backward --------------------------------------------------------------------------------------
// bag_of[k] = the bag holding position k: the last b with off[b] <= k (empty bags share an offset with
// their successor, and upper_bound steps over them).
__global__ void bag_of_kernel(const int64_t* __restrict__ off, int64_t batch, int64_t nnz, int32_t* __restrict__ bag_of) {
  const int64_t stride = static_cast<int64_t>(gridDim.x) * blockDim.x;
  for (int64_t k = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; k < nnz; k += stride) {
    int64_t lo = 0, hi = batch + 1;  // first b in [0, batch] with off[b] > k
    while (lo < hi) {
      const int64_t mid = (lo + hi) / 2;
      if (off[mid] <= k) lo = mid + 1;
      else hi = mid;
    }
    bag_of[k] = static_cast<int32_t>(lo - 1);
  }
}

// values[u, :] = sum over the lookups of rows[u] (bags in ascending order) of scale(bag) * grad_out[bag, :].
template <int V>
__global__ void __launch_bounds__(kThreads) segment_sum_kernel(const float* __restrict__ grad_out,
                                                               const int64_t* __restrict__ off,
                                                               const int32_t* __restrict__ starts,
                                                               const int32_t* __restrict__ bags, int64_t unique,
                                                               int64_t dim, int lanes, bool mean,
                                                               float* __restrict__ values) {
  const int groups_per_block = kThreads / lanes;
  const int lane = threadIdx.x % lanes;
  const int64_t u = static_cast<int64_t>(blockIdx.x) * groups_per_block + threadIdx.x / lanes;
  if (u >= unique) return;
  const int32_t begin = starts[u], end = starts[u + 1];
  for (int64_t d0 = static_cast<int64_t>(lane) * V; d0 < dim; d0 += static_cast<int64_t>(lanes) * V) {
    float acc[V];
#pragma unroll
    for (int i = 0; i < V; ++i) acc[i] = 0.0f;
    for (int32_t k = begin; k < end; ++k) {
      const int64_t b = bags[k];
      const float scale = mean ? 1.0f / static_cast<float>(off[b + 1] - off[b]) : 1.0f;
      float g[V];
      load_vec<float, V>(grad_out + b * dim + d0, g);
#pragma unroll
      for (int i = 0; i < V; ++i) acc[i] += scale * g[i];
    }
    float* o = values + u * dim + d0;
    if constexpr (V == 4) *reinterpret_cast<float4*>(o) = make_float4(acc[0], acc[1], acc[2], acc[3]);
    else
#pragma unroll
      for (int i = 0; i < V; ++i) o[i] = acc[i];
  }
}

// Device scratch of at least `bytes` from the caching allocator.
Tensor bytes_tensor(size_t bytes, Device device) {
  const int64_t words = static_cast<int64_t>((std::max<size_t>(bytes, 1) + 3) / 4);
  return Tensor::empty({words}, DType::kI32, device);
}

int bits_for(int64_t num_rows) {
  int bits = 1;
  while (bits < 63 && (int64_t{1} << bits) < num_rows) ++bits;
  return bits;
}

}  // namespace

void set_embedding_bounds_checks(bool on) { g_bounds_checks = on; }
bool embedding_bounds_checks() { return g_bounds_checks; }

namespace detail {

// The kernels index lookups with int32.
void check_lookup_count(const char* op, const Tensor& indices, const Tensor& offsets, int64_t /*batch*/) {
  RF_CHECK(indices.numel() < std::numeric_limits<int32_t>::max() && offsets.numel() < std::numeric_limits<int32_t>::max(),
           op, ": more than 2^31 lookups in one call");
}

int64_t check_bags(const char* op, const Tensor& indices, const Tensor& offsets) {
  return checks::embedding_bags(op, indices, offsets, check_lookup_count);
}

SortedLookups sort_lookups(const char* op, const Tensor& indices, const Tensor& offsets, int64_t num_rows) {
  const int64_t batch = check_bags(op, indices, offsets);
  const int64_t nnz = indices.numel();
  const Device dev = indices.device();
  if (embedding_bounds_checks()) validate(op, indices, offsets, batch, num_rows);
  SortedLookups s;
  if (nnz == 0) {
    s.rows = Tensor::empty({0}, DType::kI64, dev);
    s.starts = Tensor::zeros({1}, DType::kI32, dev);
    s.bags = Tensor::empty({0}, DType::kI32, dev);
    return s;
  }
  const int n = static_cast<int>(nnz);
  Tensor bag_of = Tensor::empty({nnz}, DType::kI32, dev);
  bag_of_kernel<<<detail::grid_for(nnz, kThreads), kThreads, 0, detail::stream()>>>(offsets.data<int64_t>(), batch,
                                                                                    nnz, bag_of.data<int32_t>());
  detail::check_launch();

  Tensor keys_sorted = Tensor::empty({nnz}, DType::kI64, dev);
  s.bags = Tensor::empty({nnz}, DType::kI32, dev);
  const int end_bit = bits_for(num_rows);
  size_t sort_bytes = 0;
  RF_CHECK_CUDA(cub::DeviceRadixSort::SortPairs(nullptr, sort_bytes, indices.data<int64_t>(),
                                                keys_sorted.data<int64_t>(), bag_of.data<int32_t>(),
                                                s.bags.data<int32_t>(), n, 0, end_bit, detail::stream()));
  Tensor unique_rows = Tensor::empty({nnz}, DType::kI64, dev);
  Tensor counts = Tensor::empty({nnz + 1}, DType::kI32, dev);  // + 1: the scan's closing entry
  Tensor num_runs = Tensor::empty({1}, DType::kI32, dev);
  size_t rle_bytes = 0;
  RF_CHECK_CUDA(cub::DeviceRunLengthEncode::Encode(nullptr, rle_bytes, keys_sorted.data<int64_t>(),
                                                   unique_rows.data<int64_t>(), counts.data<int32_t>(),
                                                   num_runs.data<int32_t>(), n, detail::stream()));
  size_t scan_bytes = 0;
  RF_CHECK_CUDA(cub::DeviceScan::ExclusiveSum(nullptr, scan_bytes, counts.data<int32_t>(), counts.data<int32_t>(),
                                              n + 1, detail::stream()));
  Tensor temp = bytes_tensor(std::max({sort_bytes, rle_bytes, scan_bytes}), dev);
  size_t temp_bytes = static_cast<size_t>(temp.numel()) * 4;

  RF_CHECK_CUDA(cub::DeviceRadixSort::SortPairs(temp.raw(), temp_bytes, indices.data<int64_t>(),
                                                keys_sorted.data<int64_t>(), bag_of.data<int32_t>(),
                                                s.bags.data<int32_t>(), n, 0, end_bit, detail::stream()));
  temp_bytes = static_cast<size_t>(temp.numel()) * 4;
  RF_CHECK_CUDA(cub::DeviceRunLengthEncode::Encode(temp.raw(), temp_bytes, keys_sorted.data<int64_t>(),
                                                   unique_rows.data<int64_t>(), counts.data<int32_t>(),
                                                   num_runs.data<int32_t>(), n, detail::stream()));
  int32_t unique = 0;
  copy_bytes(&unique, Device::cpu(), num_runs.raw(), dev, sizeof(unique));  // the one sync
  s.unique = unique;
  // starts = exclusive scan of the counts over unique + 1 entries (the extra entry closes the last run).
  s.starts = Tensor::empty({s.unique + 1}, DType::kI32, dev);
  RF_CHECK_CUDA(cudaMemsetAsync(counts.data<int32_t>() + unique, 0, sizeof(int32_t), detail::stream()));
  temp_bytes = static_cast<size_t>(temp.numel()) * 4;
  RF_CHECK_CUDA(cub::DeviceScan::ExclusiveSum(temp.raw(), temp_bytes, counts.data<int32_t>(),
                                              s.starts.data<int32_t>(), unique + 1, detail::stream()));
  s.rows = Tensor::empty({s.unique}, DType::kI64, dev);
  RF_CHECK_CUDA(cudaMemcpyAsync(s.rows.raw(), unique_rows.raw(), static_cast<size_t>(unique) * sizeof(int64_t),
                                cudaMemcpyDeviceToDevice, detail::stream()));
  return s;
}

}  // namespace detail

void embedding_bag_forward(const Tensor& table, const Tensor& indices, const Tensor& offsets, PoolMode mode,
                           Tensor& out) {
  const char* op = "embedding_bag_forward";
  const int64_t batch = checks::embedding_bag_forward(table, indices, offsets, out, detail::check_lookup_count);
  const int64_t dim = table.size(1);
  if (batch == 0) return;
  detail::DeviceScope scope(table);
  if (embedding_bounds_checks()) validate(op, indices, offsets, batch, table.size(0));
  if (dim == 0) return;
  const bool mean = mode == PoolMode::kMean;
  switch (table.dtype()) {
    case DType::kF32: launch_forward<float>(table, indices, offsets, batch, mean, out); break;
    case DType::kF16: launch_forward<f16>(table, indices, offsets, batch, mean, out); break;
    default: launch_forward<bf16>(table, indices, offsets, batch, mean, out); break;
  }
}

SparseGrad embedding_bag_backward(const Tensor& indices, const Tensor& offsets, const Tensor& grad_out,
                                  PoolMode mode, int64_t num_rows) {
  const char* op = "embedding_bag_backward";
  const int64_t batch = checks::embedding_bag_backward(indices, offsets, grad_out, detail::check_lookup_count);
  const int64_t dim = grad_out.size(1);
  detail::DeviceScope scope(grad_out);
  detail::SortedLookups s = detail::sort_lookups(op, indices, offsets, num_rows);
  SparseGrad g;
  g.rows = s.rows;
  g.values = Tensor::empty({s.unique, dim}, DType::kF32, grad_out.device());
  if (s.unique == 0 || dim == 0) return g;
  const bool vec = dim % 4 == 0 && detail::alignment_of(grad_out.raw()) >= 16 &&
                   detail::alignment_of(g.values.raw()) >= 16;
  const int lanes = detail::lanes_for(dim, vec ? 4 : 1);
  const int64_t groups = kThreads / lanes;
  const unsigned grid = static_cast<unsigned>((s.unique + groups - 1) / groups);
  const bool mean = mode == PoolMode::kMean;
  if (vec)
    segment_sum_kernel<4><<<grid, kThreads, 0, detail::stream()>>>(
        grad_out.data<float>(), offsets.data<int64_t>(), s.starts.data<int32_t>(), s.bags.data<int32_t>(), s.unique,
        dim, lanes, mean, g.values.data<float>());
  else
    segment_sum_kernel<1><<<grid, kThreads, 0, detail::stream()>>>(
        grad_out.data<float>(), offsets.data<int64_t>(), s.starts.data<int32_t>(), s.bags.data<int32_t>(), s.unique,
        dim, lanes, mean, g.values.data<float>());
  detail::check_launch();
  return g;
}

}  // namespace rf::cuda
