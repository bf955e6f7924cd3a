// CUDA embedding bags, one table or many (an embedding collection) per call; a one-table call is a
// grouped call with one table. Forward: a group of 1-32 lanes pools one bag (sized to the row so that a
// dim-16 fp32 row takes 4 lanes and a dim-128 one 32), many bags per block, blockIdx.y the table; each
// lane reads 16 bytes of a row at a time (coalesced across the group) with two rows in flight,
// accumulating in fp32, and writes its table's columns of the [batch, T * dim] output.
// Backward: every table's lookups become keys (the tables' rows stacked: row_base[t] + row) sorted
// together by one cub radix sort (32-bit keys when the tables hold < 2^32 rows together; stable: bags
// stay ascending within a row); the run heads (one cub select) are the unique rows, and one lane group
// per unique row sums its bags' gradient rows in that fixed order: no atomics, so the result is
// bit-reproducible. One synchronisation per call (all tables) brings the per-table row counts and the
// validation flags to the host; the fused optimizers (optim.cu) read the counts on the device and
// synchronise only for the bounds checks. The fused update's non-deterministic path hashes the lookups
// by row instead of sorting them (hash_table_lookups, detail::HashedLookups).
#include <cuda_runtime.h>

#include <algorithm>
#include <atomic>
#include <cub/cub.cuh>
#include <thrust/iterator/counting_iterator.h>
#include <limits>
#include <map>
#include <mutex>
#include <tuple>
#include <string>
#include <vector>

#include "kernels/cuda/cuda_common.cuh"
#include "kernels/cuda/cuda_ops.h"
#include "kernels/cuda/embedding_internal.h"
#include "kernels/validate.h"

namespace rf::cuda {
namespace {

using detail::kMaxTables;
using detail::load_vec;
using detail::TableLookups;

constexpr int kThreads = 256;
// "No bad bag / position": every byte 0x7f (one cudaMemsetAsync), larger than any bag or position.
constexpr int64_t kNone = 0x7f7f7f7f7f7f7f7fll;
std::atomic<bool> g_bounds_checks{true};

// One table of a call as the kernels see it.
struct BagTable {
  const void* table;  // [rows, dim] in the call's dtype (forward only)
  const int64_t* ind;
  const int64_t* off;
  int64_t rows, nnz;
  int64_t pos_base;  // first position of this table's lookups in the call's concatenated lookups
  int64_t row_base;  // this table's row 0 as a sort key: the tables' rows stacked in table order
};
struct BagTables {
  BagTable t[kMaxTables];
};

struct Call {
  std::vector<BagTable> tables;
  int64_t batch = 0, nnz = 0, rows = 0;  // rows: of all tables together
};

Call describe(const std::vector<Tensor>* tables, const std::vector<Tensor>& indices,
              const std::vector<Tensor>& offsets, const std::vector<int64_t>& rows, int64_t batch) {
  Call c;
  c.batch = batch;
  for (size_t t = 0; t < indices.size(); ++t) {
    BagTable b{tables ? (*tables)[t].raw() : nullptr, indices[t].data<int64_t>(), offsets[t].data<int64_t>(), rows[t],
               indices[t].numel(), c.nnz, c.rows};
    c.tables.push_back(b);
    c.nnz += b.nnz;
    c.rows += b.rows;
  }
  RF_CHECK(c.nnz < std::numeric_limits<int32_t>::max() && c.batch * static_cast<int64_t>(indices.size()) <
                                                              std::numeric_limits<int32_t>::max(),
           "embedding bags: more than 2^31 lookups or bags in one call");
  return c;
}

// Runs launch(BagTables, first table, tables in this launch) over the call's tables, kMaxTables at a time.
template <class Launch>
void per_launch(const Call& c, Launch launch) {
  for (size_t first = 0; first < c.tables.size(); first += kMaxTables) {
    BagTables tabs{};
    const size_t n = std::min<size_t>(kMaxTables, c.tables.size() - first);
    std::copy(c.tables.begin() + static_cast<std::ptrdiff_t>(first),
              c.tables.begin() + static_cast<std::ptrdiff_t>(first + n), tabs.t);
    launch(tabs, static_cast<int>(first), static_cast<unsigned>(n));
    detail::check_launch();
  }
}

// ---- validation ------------------------------------------------------------------------------------
// flags[2t]: lowest bad bag of table t (offsets[0] != 0, decreasing, or offsets[batch] != nnz);
// flags[2t + 1]: lowest position of table t holding an index outside [0, rows). kNone when good.
__global__ void validate_kernel(const __grid_constant__ BagTables tabs, int first, int64_t batch,
                                unsigned long long* flags) {
  const BagTable& tb = tabs.t[blockIdx.y];
  unsigned long long* f = flags + 2 * (first + static_cast<int64_t>(blockIdx.y));
  const int64_t stride = static_cast<int64_t>(gridDim.x) * blockDim.x;
  const int64_t start = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  for (int64_t b = start; b <= batch; b += stride) {
    const bool bad = (b == 0 && tb.off[0] != 0) || (b == batch && tb.off[batch] != tb.nnz) ||
                     (b < batch && tb.off[b + 1] < tb.off[b]);
    if (bad) atomicMin(&f[0], static_cast<unsigned long long>(b));
  }
  for (int64_t k = start; k < tb.nnz; k += stride) {
    const int64_t i = tb.ind[k];
    if (i < 0 || i >= tb.rows) atomicMin(&f[1], static_cast<unsigned long long>(k));
  }
}

// Sets flags[0, 2T) to kNone and queues the validation of every table of the call into them.
void launch_validate(const Call& c, int64_t* flags) {
  RF_CHECK_CUDA(cudaMemsetAsync(flags, 0x7f, 2 * c.tables.size() * sizeof(int64_t), detail::stream()));
  int64_t most = c.batch + 1;
  for (const BagTable& t : c.tables) most = std::max(most, t.nnz);
  per_launch(c, [&](const BagTables& tabs, int first, unsigned n) {
    validate_kernel<<<dim3(detail::grid_for(most, kThreads, 1024), n), kThreads, 0, detail::stream()>>>(
        tabs, first, c.batch, reinterpret_cast<unsigned long long*>(flags));
  });
}

// Throws the DataError the CPU op throws for the first table whose flags are set (flags on the host).
// `grouped`: name the table in the message.
void throw_if_flagged(const char* op, bool grouped, const Call& c, const std::vector<Tensor>& indices,
                      const std::vector<Tensor>& offsets, const int64_t* flags) {
  for (size_t t = 0; t < c.tables.size(); ++t) {
    const int64_t bad_bag = flags[2 * t], bad_pos = flags[2 * t + 1];
    if (bad_bag == kNone && bad_pos == kNone) continue;
    // Error path only: bring the offsets (and the bad index) to the host to name them as the CPU op does.
    const std::vector<int64_t> off = offsets[t].to_vector<int64_t>();
    const std::string o = grouped ? std::string(op) + " (table " + std::to_string(t) + ")" : std::string(op);
    const int64_t batch = c.batch, nnz = c.tables[t].nnz;
    if (bad_bag != kNone) {
      const int64_t b = bad_bag;
      if (b == 0 && off[0] != 0) throw DataError(o + ": offsets[0] is " + std::to_string(off[0]) + ", expected 0");
      if (b < batch)
        throw DataError(o + ": offsets decrease at bag " + std::to_string(b) + " (" + std::to_string(off[b]) +
                        " then " + std::to_string(off[b + 1]) + ")");
      throw DataError(o + ": offsets[" + std::to_string(batch) + "] is " + std::to_string(off[batch]) +
                      ", expected the number of indices " + std::to_string(nnz));
    }
    int64_t index = 0;
    copy_bytes(&index, Device::cpu(), indices[t].data<int64_t>() + bad_pos, indices[t].device(), sizeof(index));
    const int64_t bag = std::upper_bound(off.begin(), off.end(), bad_pos) - off.begin() - 1;
    throw DataError(o + ": bag " + std::to_string(bag) + " holds index " + std::to_string(index) + " (position " +
                    std::to_string(bad_pos) + " of indices), outside the table's rows [0, " +
                    std::to_string(c.tables[t].rows) + ")");
  }
}

// Validates every table of the call now (one launch per 32 tables, one synchronisation) and throws
// for the first bad one. The backward folds the same flags into its own synchronisation instead.
void validate_now(const char* op, bool grouped, const Call& c, const std::vector<Tensor>& indices,
                  const std::vector<Tensor>& offsets, Device device) {
  Tensor flags = Tensor::empty({2 * static_cast<int64_t>(c.tables.size())}, DType::kI64, device);
  launch_validate(c, flags.data<int64_t>());
  const std::vector<int64_t> f = flags.to_vector<int64_t>();  // synchronises
  throw_if_flagged(op, grouped, c, indices, offsets, f.data());
}

// ---- forward ---------------------------------------------------------------------------------------
// out[b, t * dim + :] = pool(table_t[ind_t[k], :] for k in [off_t[b], off_t[b+1])), t = blockIdx.y
// (out already points at the launch's first table's columns). Lanes of a group split the row into
// V-element pieces; a pass covers lanes * V elements.
template <class T, int V>
__global__ void __launch_bounds__(kThreads) forward_kernel(const __grid_constant__ BagTables tabs, int64_t batch,
                                                           int64_t dim, int64_t out_stride, int lanes, bool mean,
                                                           float* __restrict__ out) {
  const BagTable& tb = tabs.t[blockIdx.y];
  const T* __restrict__ table = static_cast<const T*>(tb.table);
  const int64_t* __restrict__ ind = tb.ind;
  const int groups_per_block = kThreads / lanes;
  const int lane = threadIdx.x % lanes;
  const int64_t bag = static_cast<int64_t>(blockIdx.x) * groups_per_block + threadIdx.x / lanes;
  if (bag >= batch) return;
  const int64_t begin = tb.off[bag], end = tb.off[bag + 1];
  const float scale = (mean && end > begin) ? 1.0f / static_cast<float>(end - begin) : 1.0f;
  float* o_row = out + bag * out_stride + static_cast<int64_t>(blockIdx.y) * dim;
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
    float* o = o_row + d0;
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
void launch_forward(const Call& c, int64_t dim, bool mean, Tensor& out) {
  constexpr int kVec = 16 / sizeof(T);
  const int64_t stride = out.size(1);
  // 16-byte pieces need every row (tables and out) to start on a 16-byte boundary.
  bool vec = dim % kVec == 0 && stride % 4 == 0 && detail::alignment_of(out.raw()) >= 16;
  for (const BagTable& t : c.tables) vec = vec && detail::alignment_of(t.table) >= 16;
  const int lanes = detail::lanes_for(dim, vec ? kVec : 1);
  const int64_t groups = kThreads / lanes;
  const unsigned grid = static_cast<unsigned>((c.batch + groups - 1) / groups);
  per_launch(c, [&](const BagTables& tabs, int first, unsigned n) {
    float* o = out.data<float>() + static_cast<int64_t>(first) * dim;
    if (vec)
      forward_kernel<T, kVec><<<dim3(grid, n), kThreads, 0, detail::stream()>>>(tabs, c.batch, dim, stride, lanes,
                                                                               mean, o);
    else
      forward_kernel<T, 1><<<dim3(grid, n), kThreads, 0, detail::stream()>>>(tabs, c.batch, dim, stride, lanes, mean,
                                                                            o);
  });
}

// Validates (when bounds checks are on: one sync for all tables), then pools every table in one launch.
void forward(const char* op, bool grouped, const std::vector<Tensor>& tables, const std::vector<Tensor>& indices,
             const std::vector<Tensor>& offsets, PoolMode mode, int64_t batch, Tensor& out) {
  if (batch == 0) return;
  detail::DeviceScope scope(out);
  std::vector<int64_t> rows;
  for (const Tensor& t : tables) rows.push_back(t.size(0));
  const Call c = describe(&tables, indices, offsets, rows, batch);
  if (embedding_bounds_checks()) validate_now(op, grouped, c, indices, offsets, out.device());
  const int64_t dim = tables[0].size(1);
  if (dim == 0) return;
  const bool mean = mode == PoolMode::kMean;
  switch (tables[0].dtype()) {
    case DType::kF32: launch_forward<float>(c, dim, mean, out); break;
    case DType::kF16: launch_forward<f16>(c, dim, mean, out); break;
    default: launch_forward<bf16>(c, dim, mean, out); break;
  }
}

// ---- backward --------------------------------------------------------------------------------------
// Calls f(table, position k, row, bag id t * batch + b) for every lookup of the launch's tables
// (blockIdx.y: the table), one group of `lanes` lanes per bag and a lane per lookup. Rows are clamped
// into the table and positions to the table's lookups, so that bad indices and offsets (validation
// reports them) never reach outside them. Also inv_len[t * batch + b] for mean pooling (when set).
template <class F>
__device__ __forceinline__ void for_each_lookup(const BagTables& tabs, int first, int64_t batch, int lanes,
                                                float* inv_len, F f) {
  const BagTable& tb = tabs.t[blockIdx.y];
  const int64_t t = first + static_cast<int64_t>(blockIdx.y);
  const int groups = static_cast<int>(blockDim.x) / lanes;
  const int lane = static_cast<int>(threadIdx.x) % lanes;
  const int64_t last_row = max(tb.rows - 1, int64_t{0});
  const int64_t stride = static_cast<int64_t>(gridDim.x) * groups;
  for (int64_t b = static_cast<int64_t>(blockIdx.x) * groups + threadIdx.x / lanes; b < batch; b += stride) {
    const int64_t o0 = tb.off[b], o1 = tb.off[b + 1];
    const int32_t bag = static_cast<int32_t>(t * batch + b);
    for (int64_t k = max(o0, int64_t{0}) + lane; k < min(o1, tb.nnz); k += lanes)
      f(tb, k, min(max(tb.ind[k], int64_t{0}), last_row), bag);
    if (inv_len != nullptr && lane == 0) inv_len[t * batch + b] = o1 > o0 ? 1.0f / static_cast<float>(o1 - o0) : 1.0f;
  }
}

// For every bag b of table t = first + blockIdx.y, a group of `lanes` lanes (sized to the call's mean bag
// length, so the reads of a bag's indices coalesce) writes each lookup k of b: keys[pos] = row_base + row
// (an out-of-range row, which validation reports, is clamped so the sort stays within its bits) and
// vals[pos] = t * batch + b. Also row_base_out[t] and, for mean pooling, inv_len[t * batch + b].
template <class K>
__global__ void keys_kernel(const __grid_constant__ BagTables tabs, int first, int64_t batch, int lanes,
                            K* __restrict__ keys, int32_t* __restrict__ vals, int64_t* __restrict__ row_base_out,
                            float* __restrict__ inv_len) {
  if (blockIdx.x == 0 && threadIdx.x == 0) row_base_out[first + blockIdx.y] = tabs.t[blockIdx.y].row_base;
  for_each_lookup(tabs, first, batch, lanes, inv_len, [&](const BagTable& tb, int64_t k, int64_t row, int32_t bag) {
    keys[tb.pos_base + k] = static_cast<K>(tb.row_base + row);
    vals[tb.pos_base + k] = bag;
  });
}

// A sorted lookup's key, 32-bit when the call's tables hold at most 2^32 rows together (a radix pass
// then moves 8 bytes a lookup instead of 12), 64-bit otherwise.
struct Keys {
  const void* p;
  bool wide;
  __device__ int64_t operator[](int64_t i) const {
    return wide ? static_cast<const int64_t*>(p)[i] : static_cast<int64_t>(static_cast<const uint32_t*>(p)[i]);
  }
};

// Sorted position i starts a run of equal keys (a unique row).
template <class K>
struct RunHead {
  const K* keys;
  __device__ bool operator()(int32_t i) const { return i == 0 || keys[i] != keys[i - 1]; }
};

// For every unique row u (run of equal sorted keys): its table and its row in that table
// (detail::UniqueRows); table_start[t] = the first unique row of table t (runs are in key order, so in
// table order); table_start[T] = the number of runs; starts[runs] = n closes the last run. The table
// of run u is that of its first lookup.
__global__ void runs_kernel(int32_t* __restrict__ starts, const int32_t* __restrict__ bags,
                            const int32_t* __restrict__ num_runs, const Keys keys,
                            const int64_t* __restrict__ row_base, int64_t batch, int64_t tables, int64_t n,
                            int64_t* __restrict__ unique_row, int32_t* __restrict__ unique_table,
                            int64_t* __restrict__ table_start) {
  const int64_t runs = *num_runs;
  const int64_t stride = static_cast<int64_t>(gridDim.x) * blockDim.x;
  for (int64_t u = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; u < runs; u += stride) {
    // The table of a sorted lookup, clamped: with bad offsets (validation throws after this) some bags
    // are never written.
    auto table_of = [&](int32_t k) { return min(max(bags[k] / batch, int64_t{0}), tables - 1); };
    const int32_t k = starts[u];
    const int64_t t = table_of(k);
    const int64_t prev = u == 0 ? -1 : table_of(starts[u - 1]);
    unique_table[u] = static_cast<int32_t>(t);
    unique_row[u] = keys[k] - row_base[t];
    for (int64_t s = prev + 1; s <= t; ++s) table_start[s] = u;
    if (u == runs - 1) {
      for (int64_t s = t + 1; s <= tables; ++s) table_start[s] = runs;
      starts[runs] = static_cast<int32_t>(n);
    }
  }
}

// values[u, :] = the gradient row of unique row u (detail::FromBags: its bags' rows in ascending order,
// scaled for mean pooling).
template <int V>
__global__ void __launch_bounds__(kThreads) segment_sum_kernel(const __grid_constant__ detail::FromBags src,
                                                               int64_t unique, int lanes, float* __restrict__ values) {
  const int groups_per_block = kThreads / lanes;
  const int lane = threadIdx.x % lanes;
  const int64_t u = static_cast<int64_t>(blockIdx.x) * groups_per_block + threadIdx.x / lanes;
  if (u >= unique) return;
  const int64_t dim = src.dim;
  for (int64_t d0 = static_cast<int64_t>(lane) * V; d0 < dim; d0 += static_cast<int64_t>(lanes) * V) {
    float acc[V];
    src.template operator()<V>(u, d0, acc);
    float* o = values + u * dim + d0;
    if constexpr (V == 4) *reinterpret_cast<float4*>(o) = make_float4(acc[0], acc[1], acc[2], acc[3]);
    else
#pragma unroll
      for (int i = 0; i < V; ++i) o[i] = acc[i];
  }
}

// ---- hashed lookups (detail::HashedLookups) ---------------------------------------------------------
// Fibonacci hashing: the top log2(cap) bits of key * 2^64 / phi.
__device__ __forceinline__ uint32_t slot_of_key(unsigned long long key, int shift) {
  return static_cast<uint32_t>((key * 0x9E3779B97F4A7C15ull) >> shift);
}

// One lane per lookup of a bag (lanes per bag as keys_kernel): insert key + 1 into the open-addressing
// table (linear probing), count the slot's lookups; the second lookup of a row takes the next of the
// `multi_rows` multi rows and zeroes it. Out-of-range indices (validation reports them) are clamped like
// keys_kernel's. Bad offsets (decreasing ones: bags overlap) can visit a position more than once, so
// more rows than multi_rows_bound's can count twice: past `multi_rows` a row gets no multi row (the
// update then writes each of its lookups alone); validation throws before any update runs. `vec_zero`:
// dim % 4 == 0 and `multi` 16-byte aligned.
__global__ void hash_kernel(const __grid_constant__ BagTables tabs, int first, int64_t batch, int lanes, int shift,
                            detail::HashSlot* __restrict__ slots, int32_t* __restrict__ multi_count,
                            int32_t* __restrict__ slot_of, int32_t* __restrict__ bag_of, float* __restrict__ inv_len,
                            float* __restrict__ multi, int64_t multi_rows, int64_t dim, bool vec_zero) {
  const uint32_t mask = static_cast<uint32_t>((~0ull) >> shift);  // cap - 1
  for_each_lookup(tabs, first, batch, lanes, inv_len, [&](const BagTable& tb, int64_t k, int64_t row, int32_t bag) {
    const unsigned long long key = static_cast<unsigned long long>(tb.row_base + row) + 1;
    uint32_t h = slot_of_key(key, shift);
    for (;;) {
      const unsigned long long prev = atomicCAS(&slots[h].key, 0ull, key);
      if (prev == 0ull || prev == key) break;
      h = (h + 1) & mask;
    }
    if (atomicAdd(&slots[h].count, 1) == 1) {  // the row's second lookup
      const int32_t m = atomicAdd(multi_count, 1);
      if (m < multi_rows) {
        float* sum = multi + static_cast<int64_t>(m) * dim;
        if (vec_zero) {  // 16-byte stores: this lane zeroes the whole row alone
          for (int64_t d = 0; d < dim; d += 4) *reinterpret_cast<float4*>(sum + d) = make_float4(0.f, 0.f, 0.f, 0.f);
        } else {
          for (int64_t d = 0; d < dim; ++d) sum[d] = 0.0f;
        }
        slots[h].multi_plus_one = m + 1;
      }
    }
    slot_of[tb.pos_base + k] = static_cast<int32_t>(h);
    bag_of[tb.pos_base + k] = bag;
  });
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

// The sparse gradients of every table from the sorted lookups (sizes on the host): values are views into
// one [unique, dim] buffer, rows views into the sort's unique rows.
std::vector<SparseGrad> segment_sums(const TableLookups& s, const Tensor& grad_out, int64_t dim) {
  const Device dev = grad_out.device();
  const size_t T = s.table_start.size() - 1;
  Tensor values = Tensor::empty({s.unique, dim}, DType::kF32, dev);
  if (s.unique > 0 && dim > 0) {
    const int64_t stride = grad_out.size(1);
    const bool vec = dim % 4 == 0 && stride % 4 == 0 && detail::alignment_of(grad_out.raw()) >= 16 &&
                     detail::alignment_of(values.raw()) >= 16;
    const int lanes = detail::lanes_for(dim, vec ? 4 : 1);
    const int64_t groups = kThreads / lanes;
    const unsigned grid = static_cast<unsigned>((s.unique + groups - 1) / groups);
    auto launch = [&](auto kernel) {
      kernel<<<grid, kThreads, 0, detail::stream()>>>(detail::from_bags(s, grad_out, dim), s.unique, lanes,
                                                      values.data<float>());
      detail::check_launch();
    };
    if (vec) launch(segment_sum_kernel<4>);
    else launch(segment_sum_kernel<1>);
  }
  std::vector<SparseGrad> grads(T);
  for (size_t t = 0; t < T; ++t) {
    grads[t].rows = s.unique_row.slice_rows(s.table_start[t], s.table_start[t + 1]);
    grads[t].values = values.slice_rows(s.table_start[t], s.table_start[t + 1]);
  }
  return grads;
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

TableLookups sort_table_lookups(const char* op, bool grouped, const std::vector<Tensor>& indices,
                                const std::vector<Tensor>& offsets, const std::vector<int64_t>& num_rows,
                                int64_t batch, bool mean, bool sizes_on_host) {
  const Call c = describe(nullptr, indices, offsets, num_rows, batch);
  const int64_t T = static_cast<int64_t>(c.tables.size());
  const Device dev = indices[0].device();
  const bool checks = embedding_bounds_checks();
  TableLookups s;
  s.batch = batch;
  for (const BagTable& t : c.tables) s.nnz_of.push_back(t.nnz);
  // info: [2T] validation flags (bounds checks on), then the [T + 1] table starts (runs_kernel writes
  // every one); one copy to the host reads both.
  Tensor info = Tensor::empty({3 * T + 1}, DType::kI64, dev);
  s.table_start_dev = info.slice_rows(2 * T, 3 * T + 1);
  s.row_base = Tensor::empty({T}, DType::kI64, dev);
  const int64_t n = c.nnz;
  if (n == 0) {
    s.starts = Tensor::zeros({1}, DType::kI32, dev);
    s.bags = Tensor::empty({0}, DType::kI32, dev);
    s.unique_row = Tensor::empty({0}, DType::kI64, dev);
    s.unique_table = Tensor::empty({0}, DType::kI32, dev);
    RF_CHECK_CUDA(cudaMemsetAsync(s.table_start_dev.raw(), 0, s.table_start_dev.nbytes(), detail::stream()));
    s.table_start.assign(static_cast<size_t>(T) + 1, 0);
    // No lookups, but the offsets can still be wrong (e.g. offsets[batch] != 0).
    if (checks) validate_now(op, grouped, c, indices, offsets, dev);
    return s;
  }
  if (checks) launch_validate(c, info.data<int64_t>());

  // Keys below 2^32 sort as uint32 (stored in an int32 tensor).
  const bool wide = c.rows > (int64_t{1} << 32);
  const DType key_dtype = wide ? DType::kI64 : DType::kI32;
  Tensor keys = Tensor::empty({n}, key_dtype, dev), sorted_keys = Tensor::empty({n}, key_dtype, dev);
  Tensor vals = Tensor::empty({n}, DType::kI32, dev);
  s.bags = Tensor::empty({n}, DType::kI32, dev);
  s.starts = Tensor::empty({n + 1}, DType::kI32, dev);
  s.unique_row = Tensor::empty({n}, DType::kI64, dev);
  s.unique_table = Tensor::empty({n}, DType::kI32, dev);
  Tensor num_runs = Tensor::empty({1}, DType::kI32, dev);
  if (mean) s.inv_len = Tensor::empty({T * batch}, DType::kF32, dev);
  const int lanes = detail::lanes_for(std::max<int64_t>(1, n / std::max<int64_t>(1, T * batch)), 1);
  const int end_bit = bits_for(c.rows);
  const int ni = static_cast<int>(n);
  auto sort = [&](auto tag) {
    using K = decltype(tag);
    K* k_in = static_cast<K*>(keys.raw());
    K* k_out = static_cast<K*>(sorted_keys.raw());
    per_launch(c, [&](const BagTables& tabs, int first, unsigned tables) {
      keys_kernel<K><<<dim3(detail::grid_for(batch * lanes, kThreads, 2048), tables), kThreads, 0, detail::stream()>>>(
          tabs, first, batch, lanes, k_in, vals.data<int32_t>(), s.row_base.data<int64_t>(),
          mean ? s.inv_len.data<float>() : nullptr);
    });
    // The sort is stable, so a row's bags stay ascending; the run heads are the unique rows' starts.
    const thrust::counting_iterator<int32_t> positions(0);
    // The scratch both need depends on the sizes and the device only: asked once per (device, lookups,
    // key bits, key width).
    static std::mutex mu;
    static std::map<std::tuple<int, int, int, bool>, size_t> scratch;
    const std::tuple<int, int, int, bool> shape{dev.index, ni, end_bit, wide};
    size_t bytes = 0;
    {
      std::lock_guard<std::mutex> lock(mu);
      auto it = scratch.find(shape);
      if (it != scratch.end()) bytes = it->second;
    }
    if (bytes == 0) {
      size_t sort_bytes = 0, select_bytes = 0;
      RF_CHECK_CUDA(cub::DeviceRadixSort::SortPairs(nullptr, sort_bytes, k_in, k_out, vals.data<int32_t>(),
                                                    s.bags.data<int32_t>(), ni, 0, end_bit, detail::stream()));
      RF_CHECK_CUDA(cub::DeviceSelect::If(nullptr, select_bytes, positions, s.starts.data<int32_t>(),
                                          num_runs.data<int32_t>(), ni, RunHead<K>{k_out}, detail::stream()));
      bytes = std::max({sort_bytes, select_bytes, size_t{1}});
      std::lock_guard<std::mutex> lock(mu);
      if (scratch.size() > 256) scratch.clear();  // many distinct batch shapes: start over
      scratch[shape] = bytes;
    }
    Tensor temp = bytes_tensor(bytes, dev);
    size_t temp_bytes = static_cast<size_t>(temp.numel()) * 4;
    RF_CHECK_CUDA(cub::DeviceRadixSort::SortPairs(temp.raw(), temp_bytes, k_in, k_out, vals.data<int32_t>(),
                                                  s.bags.data<int32_t>(), ni, 0, end_bit, detail::stream()));
    temp_bytes = static_cast<size_t>(temp.numel()) * 4;
    RF_CHECK_CUDA(cub::DeviceSelect::If(temp.raw(), temp_bytes, positions, s.starts.data<int32_t>(),
                                        num_runs.data<int32_t>(), ni, RunHead<K>{k_out}, detail::stream()));
  };
  if (wide) sort(int64_t{});
  else sort(uint32_t{});
  runs_kernel<<<detail::grid_for(n, kThreads), kThreads, 0, detail::stream()>>>(
      s.starts.data<int32_t>(), s.bags.data<int32_t>(), num_runs.data<int32_t>(), Keys{sorted_keys.raw(), wide},
      s.row_base.data<int64_t>(), batch, T, n, s.unique_row.data<int64_t>(), s.unique_table.data<int32_t>(),
      s.table_start_dev.data<int64_t>());
  detail::check_launch();

  if (sizes_on_host || checks) {
    const std::vector<int64_t> h = info.to_vector<int64_t>();  // the one sync
    if (checks) throw_if_flagged(op, grouped, c, indices, offsets, h.data());
    s.table_start.assign(h.begin() + 2 * T, h.end());
    s.unique = s.table_start.back();
  }
  return s;
}

int64_t multi_rows_bound(const std::vector<Tensor>& indices, const std::vector<int64_t>& num_rows) {
  int64_t bound = 0;
  for (size_t t = 0; t < indices.size(); ++t) bound += std::min(indices[t].numel() / 2, num_rows[t]);
  return std::max<int64_t>(bound, 1);
}

bool hashable(const std::vector<Tensor>& indices, const std::vector<int64_t>& num_rows, int64_t dim) {
  int64_t nnz = 0;
  for (const Tensor& i : indices) nnz += i.numel();
  return indices.size() <= static_cast<size_t>(kMaxTables) && nnz < (int64_t{1} << 29) &&
         multi_rows_bound(indices, num_rows) * std::max<int64_t>(dim, 1) * 4 <= (int64_t{1} << 30);
}

HashedLookups hash_table_lookups(const char* op, bool grouped, const std::vector<Tensor>& indices,
                                 const std::vector<Tensor>& offsets, const std::vector<int64_t>& num_rows,
                                 int64_t batch, bool mean, int64_t dim) {
  const Call c = describe(nullptr, indices, offsets, num_rows, batch);
  RF_CHECK(hashable(indices, num_rows, dim), op, ": the hashed lookups take at most ", kMaxTables,
           " tables, 2^29 lookups and 1 GiB of multi rows");
  const int64_t T = static_cast<int64_t>(c.tables.size());
  const Device dev = indices[0].device();
  const bool checks = embedding_bounds_checks();
  HashedLookups h;
  h.batch = batch;
  h.nnz = c.nnz;
  h.dim = dim;
  for (const BagTable& t : c.tables) h.row_base.push_back(t.row_base);
  if (c.nnz == 0) {
    if (checks) validate_now(op, grouped, c, indices, offsets, dev);  // the offsets can still be wrong
    return h;
  }
  // Validation is queued first and read after the insert pass (one synchronisation, as the sort's).
  Tensor flags;
  if (checks) {
    flags = Tensor::empty({2 * T}, DType::kI64, dev);
    launch_validate(c, flags.data<int64_t>());
  }
  const int log2_cap = bits_for(2 * c.nnz);
  h.cap = int64_t{1} << log2_cap;
  static_assert(sizeof(HashSlot) == 16, "a slot is two int64 words");
  h.slots = Tensor::empty({2 * h.cap + 1}, DType::kI64, dev);
  h.slot_of = Tensor::empty({c.nnz}, DType::kI32, dev);
  h.bag_of = Tensor::empty({c.nnz}, DType::kI32, dev);
  h.multi = Tensor::empty({multi_rows_bound(indices, num_rows), std::max<int64_t>(dim, 1)}, DType::kF32, dev);
  if (mean) h.inv_len = Tensor::empty({T * batch}, DType::kF32, dev);
  RF_CHECK_CUDA(cudaMemsetAsync(h.slots.raw(), 0, h.slots.nbytes(), detail::stream()));
  const int lanes = detail::lanes_for(std::max<int64_t>(1, c.nnz / std::max<int64_t>(1, T * batch)), 1);
  const bool vec_zero = dim % 4 == 0 && detail::alignment_of(h.multi.raw()) >= 16;
  per_launch(c, [&](const BagTables& tabs, int first, unsigned tables) {
    hash_kernel<<<dim3(detail::grid_for(batch * lanes, kThreads, 2048), tables), kThreads, 0, detail::stream()>>>(
        tabs, first, batch, lanes, 64 - log2_cap, h.table(), h.multi_count(), h.slot_of.data<int32_t>(),
        h.bag_of.data<int32_t>(), mean ? h.inv_len.data<float>() : nullptr, h.multi.data<float>(), h.multi.size(0),
        dim, vec_zero);
  });
  if (checks) {
    const std::vector<int64_t> f = flags.to_vector<int64_t>();  // the one synchronisation
    throw_if_flagged(op, grouped, c, indices, offsets, f.data());
  }
  return h;
}

}  // namespace detail

void embedding_bag_forward(const Tensor& table, const Tensor& indices, const Tensor& offsets, PoolMode mode,
                           Tensor& out) {
  const int64_t batch = checks::embedding_bag_forward(table, indices, offsets, out, detail::check_lookup_count);
  forward("embedding_bag_forward", false, {table}, {indices}, {offsets}, mode, batch, out);
}

void embedding_bags_forward(const std::vector<Tensor>& tables, const std::vector<Tensor>& indices,
                            const std::vector<Tensor>& offsets, PoolMode mode, Tensor& out) {
  const int64_t batch = checks::embedding_bags_forward(tables, indices, offsets, out, detail::check_lookup_count);
  forward("embedding_bags_forward", true, tables, indices, offsets, mode, batch, out);
}

void check_embedding_bags(const std::vector<Tensor>& indices, const std::vector<Tensor>& offsets,
                          const std::vector<int64_t>& num_rows) {
  const char* op = "embedding_bags_forward";
  const int64_t batch = checks::embedding_bags_lists(indices, offsets, num_rows.size(), detail::check_lookup_count);
  if (batch == 0) return;
  detail::DeviceScope scope(indices[0]);
  validate_now(op, true, describe(nullptr, indices, offsets, num_rows, batch), indices, offsets, indices[0].device());
}

SparseGrad embedding_bag_backward(const Tensor& indices, const Tensor& offsets, const Tensor& grad_out,
                                  PoolMode mode, int64_t num_rows) {
  const char* op = "embedding_bag_backward";
  const int64_t batch = checks::embedding_bag_backward(indices, offsets, grad_out, detail::check_lookup_count);
  detail::DeviceScope scope(grad_out);
  const detail::TableLookups s =
      detail::sort_table_lookups(op, false, {indices}, {offsets}, {num_rows}, batch, mode == PoolMode::kMean, true);
  return segment_sums(s, grad_out, grad_out.size(1))[0];
}

std::vector<SparseGrad> embedding_bags_backward(const std::vector<Tensor>& indices, const std::vector<Tensor>& offsets,
                                                const Tensor& grad_out, PoolMode mode,
                                                const std::vector<int64_t>& num_rows) {
  const char* op = "embedding_bags_backward";
  const int64_t batch =
      checks::embedding_bags_backward(indices, offsets, grad_out, num_rows, detail::check_lookup_count);
  detail::DeviceScope scope(grad_out);
  const detail::TableLookups s =
      detail::sort_table_lookups(op, true, indices, offsets, num_rows, batch, mode == PoolMode::kMean, true);
  return segment_sums(s, grad_out, grad_out.size(1) / static_cast<int64_t>(num_rows.size()));
}

}  // namespace rf::cuda
