// CUDA fused optimizers (kernels/optim_fused.h). Sparse: one lane group per touched row, sized like the
// embedding kernels; the gradient row comes from a SparseGrad or is reduced on the fly from the lookups
// of every table of a collection sorted together (fused backward + update; a one-table call is the
// one-table case), and the row lives in one table (OneTable) or in the table its key belongs to
// (ManyTables). With cuda::set_deterministic_embedding_update(false) the fused backward hashes the
// lookups by row instead (hashed_update_kernel: a lane group per lookup, float atomics for rows looked
// up more than once). Row-wise Adagrad reads up to four 4-wide pieces of the row before it reduces the
// gradient, keeps them and their gradient in registers between its two phases (sum of squares, then
// update) and recomputes the rest. The fused backward's kernels read their row counts on the device.
// Dense: a multi-tensor launch whose kernel argument carries up to 48 tensors; each block finds its
// tensor and chunk from a prefix table, so many small parameters cost one launch.
#include <cuda_runtime.h>

#include <algorithm>
#include <atomic>
#include <cmath>

#include "kernels/cuda/cuda_common.cuh"
#include "kernels/cuda/cuda_ops.h"
#include "kernels/cuda/embedding_internal.h"
#include "kernels/optim_fused.h"
#include "kernels/validate.h"

namespace rf {
namespace {

using cuda::detail::load_vec;
using cuda::detail::store_vec;

constexpr int kThreads = 256;
constexpr int kCachedPieces = 4;

// Calls f(std::integral_constant<int, C>) with C the pieces of V elements a lane of `lanes` covers in a
// row of `dim` (1, 2 or kCachedPieces; longer rows recompute the rest).
template <class F>
void cached_pieces(int64_t dim, int lanes, int v, F f) {
  const int64_t pieces = (dim + static_cast<int64_t>(lanes) * v - 1) / (static_cast<int64_t>(lanes) * v);
  if (pieces <= 1) f(std::integral_constant<int, 1>{});
  else if (pieces <= 2) f(std::integral_constant<int, 2>{});
  else f(std::integral_constant<int, kCachedPieces>{});
}

// Gradient row piece [d0, d0 + V) of touched row u, from a SparseGrad's values.
struct FromValues {
  const float* values;
  int64_t dim;
  template <int V>
  __device__ void operator()(int64_t u, int64_t d0, float (&g)[V]) const {
    load_vec<float, V>(values + u * dim + d0, g);
  }
};

// ... or reduced from the sorted lookups (cuda::detail::FromBags, as the embedding backward does).
using cuda::detail::FromBags;

// Where touched row u lives: in one table, at a SparseGrad's rows[u] ...
template <class T>
struct OneTable {
  T* table;
  float* acc;  // row-wise Adagrad's per-row state; nullptr for SGD
  const int64_t* rows;
  int64_t dim;
  __device__ void locate(int64_t u, T*& w, float*& a) const {
    const int64_t r = rows[u];
    w = table + r * dim;
    a = acc ? acc + r : nullptr;
  }
};

// ... or in one of up to kMaxTables tables of a grouped backward (the sorted lookups' UniqueRows).
using cuda::detail::kMaxTables;
template <class T>
struct ManyTables {
  T* table[kMaxTables];
  float* acc[kMaxTables];
  cuda::detail::UniqueRows rows;
  int64_t dim;
  int first;  // table[0] is table `first` of the call
  __device__ void locate(int64_t u, T*& w, float*& a) const {
    int64_t t;
    const int64_t r = rows.row(u, t);
    w = table[t - first] + r * dim;
    a = acc[t - first] ? acc[t - first] + r : nullptr;
  }
};

// The touched rows [begin, end) of a launch: known on the host (a SparseGrad's), or table_start[first]
// and table_start[last] read on the device (the fused backward's, which does not synchronise for them;
// its grid covers the launch's lookups, an upper bound, and the groups past the end return).
struct RowRange {
  int64_t begin = 0, end = 0;
  const int64_t* table_start = nullptr;
  int first = 0, last = 0;
  __device__ void get(int64_t& b, int64_t& e) const {
    if (table_start) {
      b = table_start[first];
      e = table_start[last];
    } else {
      b = begin;
      e = end;
    }
  }
};

// A learning rate passed by value, or read when the kernel runs from device memory (`dev`: a CUDA graph's
// per-step scalar, written before each replay).
struct Lr {
  float value = 0.0f;
  const float* dev = nullptr;
  __device__ float get() const { return dev ? *dev : value; }
};

// Touched rows of `range`, one lane group each.
template <class T, int V, class Dst, class Src>
__global__ void __launch_bounds__(kThreads) sparse_sgd_kernel(const __grid_constant__ Dst dst, RowRange range,
                                                              int64_t dim, int lanes, Lr lr,
                                                              const __grid_constant__ Src src) {
  const float neg_lr = -lr.get();
  int64_t u_begin, u_end;
  range.get(u_begin, u_end);
  const int lane = threadIdx.x % lanes;
  const int64_t u = u_begin + static_cast<int64_t>(blockIdx.x) * (kThreads / lanes) + threadIdx.x / lanes;
  if (u >= u_end) return;
  T* w;
  float* unused;
  dst.locate(u, w, unused);
  for (int64_t d0 = static_cast<int64_t>(lane) * V; d0 < dim; d0 += static_cast<int64_t>(lanes) * V) {
    float g[V], x[V];
    load_vec<T, V>(w + d0, x);  // issued before the gradient's loads, which do not depend on it
    src.template operator()<V>(u, d0, g);
#pragma unroll
    for (int i = 0; i < V; ++i) x[i] = fmaf(neg_lr, g[i], x[i]);
    store_vec<T, V>(w + d0, x);
  }
}

// sum_sq += the squares of one piece's gradient, decayed (g + wd * row) when `decay`: the terms of
// row-wise Adagrad's accumulator. `row` is read only when `decay`.
template <int V>
__device__ __forceinline__ void add_squares(float& sum_sq, const float (&g)[V], const float (&row)[V], float wd,
                                            bool decay) {
#pragma unroll
  for (int i = 0; i < V; ++i) {
    const float gx = decay ? g[i] + wd * row[i] : g[i];
    sum_sq += gx * gx;
  }
}

// Row-wise Adagrad's update of one row once its group has summed the squares of its (decayed) gradient:
// lane 0 stores the new accumulator (FBGEMM divides the sum by D, not a multiply by 1/D), and the row's
// first C pieces, held in registers with their gradient, are written back as
// correction * row - multiplier * g. Returns {multiplier, correction} for pieces past the first C.
struct AdagradScale {
  float multiplier, correction;
};
template <class T, int V, int C>
__device__ __forceinline__ AdagradScale adagrad_update_pieces(T* w, float* acc, float old_acc, float sum_sq,
                                                              const float (&row)[C][V], const float (&g)[C][V],
                                                              int lane, int lanes, int64_t dim, float lr, float eps,
                                                              float wd) {
  const float new_acc = old_acc + sum_sq / static_cast<float>(dim);
  if (lane == 0) *acc = new_acc;
  const float multiplier = lr / (sqrtf(new_acc) + eps);
  const float correction = wd != 0.0f ? 1.0f - multiplier * wd : 1.0f;
#pragma unroll
  for (int c = 0; c < C; ++c) {
    const int64_t d0 = static_cast<int64_t>(lane) * V + static_cast<int64_t>(c) * lanes * V;
    if (d0 < dim) {
      float x[V];
#pragma unroll
      for (int i = 0; i < V; ++i) x[i] = correction * row[c][i] - multiplier * g[c][i];
      store_vec<T, V>(w + d0, x);
    }
  }
  return {multiplier, correction};
}

// The row's first kCachedPieces pieces (and the accumulator) are read before the gradient is reduced, so
// those reads overlap its; their gradient pieces stay in registers between the two phases.
// C: pieces a lane keeps (1, 2 or 4; cached_pieces()), so a short row does not hold registers for four.
template <class T, int V, int C, class Dst, class Src>
__global__ void __launch_bounds__(kThreads) rowwise_adagrad_kernel(const __grid_constant__ Dst dst, RowRange range,
                                                                   int64_t dim, int lanes, Lr step_lr, float eps,
                                                                   float wd, const __grid_constant__ Src src) {
  int64_t u_begin, u_end;
  range.get(u_begin, u_end);
  const int lane = threadIdx.x % lanes;
  const int64_t u = u_begin + static_cast<int64_t>(blockIdx.x) * (kThreads / lanes) + threadIdx.x / lanes;
  // Groups past the end stay for the shuffles below (a full-warp mask needs every lane) but touch nothing.
  const bool active = u < u_end;
  T* w = nullptr;
  float* acc = nullptr;
  if (active) dst.locate(u, w, acc);
  const bool decay = wd != 0.0f;
  const int64_t step = static_cast<int64_t>(lanes) * V;
  const float old_acc = active ? *acc : 0.0f;  // read by every lane before lane 0 writes (shuffles sync)
  float row[C][V], cache[C][V];
#pragma unroll
  for (int c = 0; c < C; ++c) {
    const int64_t d0 = static_cast<int64_t>(lane) * V + c * step;
    if (active && d0 < dim) load_vec<T, V>(w + d0, row[c]);
  }
  float sum_sq = 0.0f;
#pragma unroll
  for (int c = 0; c < C; ++c) {
    const int64_t d0 = static_cast<int64_t>(lane) * V + c * step;
    if (active && d0 < dim) {
      src.template operator()<V>(u, d0, cache[c]);
      add_squares<V>(sum_sq, cache[c], row[c], wd, decay);
    }
  }
  for (int64_t d0 = static_cast<int64_t>(lane) * V + C * step; active && d0 < dim; d0 += step) {
    float g[V], x[V];
    src.template operator()<V>(u, d0, g);
    if (decay) load_vec<T, V>(w + d0, x);
    add_squares<V>(sum_sq, g, x, wd, decay);
  }
  for (int o = lanes / 2; o > 0; o >>= 1) sum_sq += __shfl_xor_sync(0xffffffffu, sum_sq, o);
  if (!active) return;
  const AdagradScale k = adagrad_update_pieces<T, V, C>(w, acc, old_acc, sum_sq, row, cache, lane, lanes, dim,
                                                        step_lr.get(), eps, wd);
  for (int64_t d0 = static_cast<int64_t>(lane) * V + C * step; d0 < dim; d0 += step) {
    float g[V], x[V];
    src.template operator()<V>(u, d0, g);
    load_vec<T, V>(w + d0, x);
#pragma unroll
    for (int i = 0; i < V; ++i) x[i] = k.correction * x[i] - k.multiplier * g[i];
    store_vec<T, V>(w + d0, x);
  }
}

// ---- the hashed fused update (cuda::set_deterministic_embedding_update(false)) ---------------------------
// One lane group per lookup (detail::HashedLookups): g holds the whole gradient row, C pieces of V per lane.
// A row looked up once is updated by its lookup; the lookups of a row looked up more often add into its
// multi row with float atomics, and the last to arrive updates the row with the sum. The row functors
// below are called by every lane of the warp (their shuffles need it), `mine` says whether the lane's
// group updates a row.
struct SgdRow {
  Lr lr;
  template <class T, int V, int C>
  __device__ void operator()(T* w, float* /*state*/, const float (&g)[C][V], int lane, int lanes, int64_t dim,
                             bool mine) const {
    if (!mine) return;
    const float neg_lr = -lr.get();
#pragma unroll
    for (int c = 0; c < C; ++c) {
      const int64_t d0 = static_cast<int64_t>(lane) * V + static_cast<int64_t>(c) * lanes * V;
      if (d0 < dim) {
        float x[V];
        load_vec<T, V>(w + d0, x);
#pragma unroll
        for (int i = 0; i < V; ++i) x[i] = fmaf(neg_lr, g[c][i], x[i]);
        store_vec<T, V>(w + d0, x);
      }
    }
  }
};

// rowwise_adagrad_kernel's arithmetic (adagrad_update_pieces) on a row held in registers.
struct AdagradRow {
  Lr lr;
  float eps, wd;
  template <class T, int V, int C>
  __device__ void operator()(T* w, float* state, const float (&g)[C][V], int lane, int lanes, int64_t dim,
                             bool mine) const {
    const bool decay = wd != 0.0f;
    const float old_acc = mine ? *state : 0.0f;  // read by every lane before lane 0 writes (shuffles sync)
    float row[C][V];
    float sum_sq = 0.0f;
#pragma unroll
    for (int c = 0; c < C; ++c) {
      const int64_t d0 = static_cast<int64_t>(lane) * V + static_cast<int64_t>(c) * lanes * V;
      if (mine && d0 < dim) {
        load_vec<T, V>(w + d0, row[c]);
        add_squares<V>(sum_sq, g[c], row[c], wd, decay);
      }
    }
    for (int o = lanes / 2; o > 0; o >>= 1) sum_sq += __shfl_xor_sync(0xffffffffu, sum_sq, o);
    if (mine) adagrad_update_pieces<T, V, C>(w, state, old_acc, sum_sq, row, g, lane, lanes, dim, lr.get(), eps, wd);
  }
};

// The hashed lookups as the update kernel reads them (detail::HashedLookups), the tables' row bases and
// sizes in the parameters.
struct Hashed {
  cuda::detail::HashSlot* slots;
  const int32_t* slot_of;
  const int32_t* bag_of;
  const float* inv_len;
  const float* grad_out;
  float* multi;
  int64_t stride, dim, batch, nnz, cap, tables;
  int64_t row_base[kMaxTables];
  int64_t rows[kMaxTables];
};

// sum[0, V) += g with float atomics: one 16-byte atomic on sm_90 when V is 4 (the multi rows are then
// 16-byte aligned), else one per element.
template <int V>
__device__ __forceinline__ void atomic_add_vec(float* sum, const float (&g)[V]) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  if constexpr (V == 4) {
    atomicAdd(reinterpret_cast<float4*>(sum), make_float4(g[0], g[1], g[2], g[3]));
  } else
#endif
  {
#pragma unroll
    for (int i = 0; i < V; ++i) atomicAdd(sum + i, g[i]);
  }
}

template <class T, int V, int C, class Row>
__global__ void __launch_bounds__(kThreads) hashed_update_kernel(const __grid_constant__ ManyTables<T> dst,
                                                                 const __grid_constant__ Hashed src, int lanes,
                                                                 Row update) {
  const int lane = static_cast<int>(threadIdx.x) % lanes;
  const int groups = kThreads / lanes;
  const int64_t dim = src.dim, step = static_cast<int64_t>(lanes) * V;
  const unsigned group_mask =
      lanes == 32 ? 0xffffffffu : ((1u << lanes) - 1u) << (static_cast<int>(threadIdx.x % 32) / lanes * lanes);
  // `base` is the same for every thread of the block, so every lane of a warp runs each iteration (the
  // row functors' shuffles); groups past the last lookup run it inactive.
  for (int64_t base = static_cast<int64_t>(blockIdx.x) * groups; base < src.nnz;
       base += static_cast<int64_t>(gridDim.x) * groups) {
    const int64_t p = base + threadIdx.x / lanes;
    const bool active = p < src.nnz;
    float g[C][V];
#pragma unroll
    for (int c = 0; c < C; ++c)
#pragma unroll
      for (int i = 0; i < V; ++i) g[c][i] = 0.0f;
    int64_t h = 0, t = 0;
    if (active) {
      // Clamped: with bad offsets and the bounds checks off, some lookups were never hashed.
      h = src.slot_of[p] & (src.cap - 1);
      const int64_t bag = min(max(static_cast<int64_t>(src.bag_of[p]), int64_t{0}), src.tables * src.batch - 1);
      t = bag / src.batch;
      const float scale = src.inv_len ? src.inv_len[bag] : 1.0f;
      const float* go = src.grad_out + (bag - t * src.batch) * src.stride + t * dim;
#pragma unroll
      for (int c = 0; c < C; ++c) {
        const int64_t d0 = static_cast<int64_t>(lane) * V + c * step;
        if (d0 < dim) {
          load_vec<float, V>(go + d0, g[c]);
#pragma unroll
          for (int i = 0; i < V; ++i) g[c][i] *= scale;
        }
      }
    }
    // The slot's key and multi row in one 16-byte load (its count changes under this kernel's atomics;
    // key and multi row were written by the insert pass).
    unsigned long long key = 0ull;
    int32_t m = -1;
    if (active) {
      const int4 e = __ldcg(reinterpret_cast<const int4*>(src.slots + h));
      key = static_cast<unsigned long long>(static_cast<uint32_t>(e.x)) |
            (static_cast<unsigned long long>(static_cast<uint32_t>(e.y)) << 32);
      m = e.w - 1;
    }
    bool mine = active;
    if (m >= 0) {  // the row has several lookups: add this one's gradient; the last to arrive updates
      float* sum = src.multi + static_cast<int64_t>(m) * dim;
#pragma unroll
      for (int c = 0; c < C; ++c) {
        const int64_t d0 = static_cast<int64_t>(lane) * V + c * step;
        if (d0 < dim) atomic_add_vec<V>(sum + d0, g[c]);
      }
      __threadfence();
      __syncwarp(group_mask);
      int last = 0;
      if (lane == 0) last = atomicSub(&src.slots[h].count, 1) == 1;
      last = __shfl_sync(group_mask, last, 0, lanes);
      mine = last != 0;
      if (mine) {
        __threadfence();
#pragma unroll
        for (int c = 0; c < C; ++c) {
          const int64_t d0 = static_cast<int64_t>(lane) * V + c * step;
          if (d0 < dim) {
            if constexpr (V == 4) {
              const float4 x = __ldcg(reinterpret_cast<const float4*>(sum + d0));
              g[c][0] = x.x; g[c][1] = x.y; g[c][2] = x.z; g[c][3] = x.w;
            } else {
#pragma unroll
              for (int i = 0; i < V; ++i) g[c][i] = __ldcg(sum + d0 + i);
            }
          }
        }
      }
    }
    T* w = nullptr;
    float* state = nullptr;
    if (mine) {
      const int64_t r = static_cast<int64_t>(key) - 1 - src.row_base[t];
      mine = key != 0ull && r >= 0 && r < src.rows[t];
      if (mine) {
        w = dst.table[t] + r * dim;
        state = dst.acc[t] ? dst.acc[t] + r : nullptr;
      }
    }
    update.template operator()<T, V, C>(w, state, g, lane, lanes, dim, mine);
  }
}

void check_table(const Tensor& table, const char* op) {
  RF_CHECK(table.device().is_cuda(), op, ": table on ", table.device().str(), "; the fused optimizers are CUDA-only");
  if (table.dim() != 2 || !is_floating(table.dtype()))
    throw ShapeError(std::string(op) + ": table must be a 2-d fp32/fp16/bf16 tensor, got " +
                     dtype_name(table.dtype()) + shape_str(table.shape()));
}

void check_acc(const Tensor& table, const Tensor& acc, const char* op) {
  check_shape(acc, {table.size(0)}, (std::string(op) + ": acc").c_str());
  check_dtype(acc, DType::kF32, (std::string(op) + ": acc").c_str());
  RF_CHECK(acc.device() == table.device(), op, ": acc on ", acc.device().str(), ", table on ", table.device().str());
}

// Calls launch(V tag, T tag, grid, lanes) for `count` touched rows with the group geometry of the
// embedding kernels: pieces of 4 (16-byte gradient loads, 4-element row accesses) when `vec` (dim and
// the gradient's layout allow it) and every table in `tables` starts on a 4-element boundary.
template <class Launch>
void launch_rows(const std::vector<Tensor*>& tables, int64_t count, bool vec, Launch launch) {
  const DType dt = tables[0]->dtype();
  const int64_t dim = tables[0]->size(1);
  if (count == 0 || dim == 0) return;
  for (const Tensor* t : tables)
    vec = vec && cuda::detail::alignment_of(t->raw()) >= static_cast<int>(4 * dtype_size(dt));
  const int v = vec ? 4 : 1;
  int lanes = cuda::detail::lanes_for(dim, v);
  const int narrowed = lanes / cuda::sparse_update_narrowing();
  if (narrowed >= 1 && dim <= 2 * static_cast<int64_t>(narrowed) * v) lanes = narrowed;
  const int64_t groups = kThreads / lanes;
  const unsigned grid = static_cast<unsigned>((count + groups - 1) / groups);
  auto by_vec = [&](auto tag) {
    if (vec) launch(std::integral_constant<int, 4>{}, tag, grid, lanes);
    else launch(std::integral_constant<int, 1>{}, tag, grid, lanes);
  };
  switch (dt) {
    case DType::kF32: by_vec(float{}); break;
    case DType::kBF16: by_vec(bf16{}); break;
    default: by_vec(f16{}); break;
  }
  cuda::detail::check_launch();
}

void check_sparse_grad(const Tensor& table, const SparseGrad& grad, const char* op) {
  const std::string o(op);
  check_dtype(grad.rows, DType::kI64, (o + ": grad.rows").c_str());
  check_dtype(grad.values, DType::kF32, (o + ": grad.values").c_str());
  check_shape(grad.values, {grad.rows.numel(), table.size(1)}, (o + ": grad.values").c_str());
  RF_CHECK(grad.rows.device() == table.device() && grad.values.device() == table.device(), op,
           ": gradient and table on different devices");
}

// A SparseGrad's update of one table: run(V, T, grid, lanes, OneTable<T>, FromValues, RowRange).
template <class Run>
void update_from_values(Tensor& table, Tensor* acc, const SparseGrad& grad, Run run) {
  const int64_t dim = table.size(1);
  const FromValues src{grad.values.data<float>(), dim};
  const bool vec = dim % 4 == 0 && cuda::detail::alignment_of(grad.values.raw()) >= 16;
  RowRange range;
  range.end = grad.rows.numel();
  launch_rows({&table}, range.end, vec, [&](auto v, auto tag, unsigned grid, int lanes) {
    using T = decltype(tag);
    OneTable<T> dst{static_cast<T*>(table.raw()), acc ? acc->data<float>() : nullptr, grad.rows.data<int64_t>(), dim};
    run(v, tag, grid, lanes, dst, src, range);
  });
}

std::atomic<bool> g_deterministic{true};

// The hashed path takes the calls detail::hashable accepts whose rows fit a lane group's registers (the
// four cached pieces of the sorted path's kernel) when determinism is not asked for.
bool hashed_path(const std::vector<Tensor>& indices, const std::vector<int64_t>& rows, int64_t dim, bool vec) {
  return !g_deterministic && dim <= int64_t{32} * (vec ? 4 : 1) * kCachedPieces &&
         cuda::detail::hashable(indices, rows, dim);
}

// The fused backward + update through the hashed lookups: one insert launch, one update launch (plus the
// validation and its synchronisation when the bounds checks are on).
template <class Row>
void update_hashed(const char* op, const std::vector<Tensor>& indices, const std::vector<Tensor>& offsets,
                   const Tensor& grad_out, PoolMode mode, const std::vector<Tensor*>& tables,
                   const std::vector<Tensor*>& accs, const std::vector<int64_t>& rows, int64_t batch, bool vec,
                   const Row& row) {
  const int64_t dim = tables[0]->size(1), T = static_cast<int64_t>(tables.size());
  const cuda::detail::HashedLookups h = cuda::detail::hash_table_lookups(
      op, T > 1, indices, offsets, rows, batch, mode == PoolMode::kMean, dim);
  if (h.nnz == 0) return;
  Hashed src{};
  src.slots = h.table();
  src.slot_of = h.slot_of.data<int32_t>();
  src.bag_of = h.bag_of.data<int32_t>();
  src.inv_len = h.inv_len.defined() ? h.inv_len.data<float>() : nullptr;
  src.grad_out = grad_out.data<float>();
  src.multi = h.multi.data<float>();
  src.stride = grad_out.size(1);
  src.dim = dim;
  src.batch = batch;
  src.nnz = h.nnz;
  src.cap = h.cap;
  src.tables = T;
  for (int64_t t = 0; t < T; ++t) {
    src.row_base[t] = h.row_base[static_cast<size_t>(t)];
    src.rows[t] = rows[static_cast<size_t>(t)];
  }
  launch_rows(tables, h.nnz, vec, [&](auto v, auto tag, unsigned grid, int lanes) {
    using T_ = decltype(tag);
    ManyTables<T_> dst{};
    for (int64_t t = 0; t < T; ++t) {
      dst.table[t] = static_cast<T_*>(tables[static_cast<size_t>(t)]->raw());
      dst.acc[t] = accs.empty() ? nullptr : accs[static_cast<size_t>(t)]->data<float>();
    }
    dst.dim = dim;
    cached_pieces(dim, lanes, decltype(v)::value, [&](auto c) {
      hashed_update_kernel<T_, decltype(v)::value, decltype(c)::value, Row>
          <<<std::min<unsigned>(grid, 65535u * 8u), kThreads, 0, cuda::detail::stream()>>>(dst, src, lanes, row);
    });
  });
}

// The fused backward + update of many tables: sorts every table's lookups together (no synchronisation
// unless the bounds checks are on), then run(V, T, grid, lanes, ManyTables<T>, FromBags, RowRange) per
// launch of up to kMaxTables tables.
template <class Run, class Row>
void update_from_bags(const char* op, const std::vector<Tensor>& indices, const std::vector<Tensor>& offsets,
                      const Tensor& grad_out, PoolMode mode, const std::vector<Tensor*>& tables,
                      const std::vector<Tensor*>& accs, Run run, const Row& row) {
  checks::embedding_tables(op, std::vector<const Tensor*>(tables.begin(), tables.end()));
  RF_CHECK(accs.empty() || accs.size() == tables.size(), op, ": ", tables.size(), " tables, ", accs.size(),
           " accumulators");
  std::vector<int64_t> rows;
  for (size_t t = 0; t < tables.size(); ++t) {
    check_table(*tables[t], op);
    RF_CHECK(tables[t]->device() == tables[0]->device(), op, ": table ", t, " on ", tables[t]->device().str(),
             ", table 0 on ", tables[0]->device().str());
    if (!accs.empty()) check_acc(*tables[t], *accs[t], op);
    rows.push_back(tables[t]->size(0));
  }
  const int64_t batch = checks::embedding_bags_backward(indices, offsets, grad_out, rows, cuda::detail::check_lookup_count);
  const int64_t dim = tables[0]->size(1), T = static_cast<int64_t>(tables.size());
  RF_CHECK(grad_out.size(1) == T * dim, op, ": grad_out has ", grad_out.size(1), " columns, expected ", T, " tables x ",
           dim);
  cuda::detail::DeviceScope scope(*tables[0]);
  const int64_t stride = grad_out.size(1);
  const bool vec = dim % 4 == 0 && stride % 4 == 0 && cuda::detail::alignment_of(grad_out.raw()) >= 16;
  if (hashed_path(indices, rows, dim, vec)) {
    update_hashed(op, indices, offsets, grad_out, mode, tables, accs, rows, batch, vec, row);
    return;
  }
  const cuda::detail::TableLookups s = cuda::detail::sort_table_lookups(
      op, tables.size() > 1, indices, offsets, rows, batch, mode == PoolMode::kMean, /*sizes_on_host=*/false);
  const FromBags src = cuda::detail::from_bags(s, grad_out, dim);
  for (int64_t first = 0; first < T; first += kMaxTables) {
    const int64_t last = std::min<int64_t>(T, first + kMaxTables);
    RowRange range;
    int64_t bound = 0;  // rows the launch covers: exact when the sizes are on the host, else its lookups
    if (s.sizes_on_host()) {
      range.begin = s.table_start[static_cast<size_t>(first)];
      range.end = s.table_start[static_cast<size_t>(last)];
      bound = range.end - range.begin;
    } else {
      range.table_start = s.table_start_dev.data<int64_t>();
      range.first = static_cast<int>(first);
      range.last = static_cast<int>(last);
      for (int64_t t = first; t < last; ++t) bound += s.nnz_of[static_cast<size_t>(t)];
    }
    const std::vector<Tensor*> chunk(tables.begin() + first, tables.begin() + last);
    launch_rows(chunk, bound, vec, [&](auto v, auto tag, unsigned grid, int lanes) {
      using T_ = decltype(tag);
      ManyTables<T_> dst{};
      for (int64_t t = first; t < last; ++t) {
        dst.table[t - first] = static_cast<T_*>(tables[static_cast<size_t>(t)]->raw());
        dst.acc[t - first] = accs.empty() ? nullptr : accs[static_cast<size_t>(t)]->data<float>();
      }
      dst.rows = cuda::detail::unique_rows(s);
      dst.dim = dim;
      dst.first = static_cast<int>(first);
      run(v, tag, grid, lanes, dst, src, range);
    });
  }
}

// ---- dense multi-tensor ---------------------------------------------------------------------------------
constexpr int kMaxTensors = 48;
constexpr int kChunk = kThreads * 4;  // elements per block

struct TensorList {
  float* p[4][kMaxTensors];        // param, grad, state 1, state 2
  int64_t n[kMaxTensors];
  int32_t block_start[kMaxTensors + 1];  // prefix of chunk counts
  int count;
};

// The per-step scalars (those that change with the step or the learning rate) come first; `step_dev`,
// when set, holds them in device memory, read when the kernel runs (a CUDA graph's launches).
struct AdamConsts {
  float neg_step_size, bc2_sqrt, decay_factor;
  float b1, one_minus_b1, b2, one_minus_b2, eps, wd, grad_scale;
  bool l2, decoupled;
  const float* step_dev;
};

struct AdagradConsts {
  float clr_neg;
  float wd, eps, grad_scale;
  bool decay;
  const float* step_dev;
};

__device__ __forceinline__ int find_tensor(const TensorList& l) {
  int lo = 0, hi = l.count - 1;  // last t with block_start[t] <= blockIdx.x
  while (lo < hi) {
    const int mid = (lo + hi + 1) / 2;
    if (l.block_start[mid] <= static_cast<int32_t>(blockIdx.x)) lo = mid;
    else hi = mid - 1;
  }
  return lo;
}

__global__ void __launch_bounds__(kThreads) adam_kernel(TensorList l, AdamConsts c) {
  const int t = find_tensor(l);
  const int64_t base = static_cast<int64_t>(blockIdx.x - l.block_start[t]) * kChunk;
  float* w = l.p[0][t];
  const float* g = l.p[1][t];
  float* m = l.p[2][t];
  float* v = l.p[3][t];
  const float neg_step_size = c.step_dev ? c.step_dev[0] : c.neg_step_size;
  const float bc2_sqrt = c.step_dev ? c.step_dev[1] : c.bc2_sqrt;
  const float decay_factor = c.step_dev ? c.step_dev[2] : c.decay_factor;
  const int64_t end = min(base + kChunk, l.n[t]);
  for (int64_t i = base + threadIdx.x; i < end; i += blockDim.x) {
    float wi = w[i];
    float gi = g[i] * c.grad_scale;
    if (c.l2) gi = fmaf(c.wd, wi, gi);
    if (c.decoupled) wi = wi * decay_factor;
    const float mi = fmaf(c.one_minus_b1, gi, m[i] * c.b1);
    const float vi = fmaf(c.one_minus_b2 * gi, gi, v[i] * c.b2);
    m[i] = mi;
    v[i] = vi;
    const float denom = sqrtf(vi) / bc2_sqrt + c.eps;
    w[i] = wi + (neg_step_size * mi) / denom;
  }
}

__global__ void __launch_bounds__(kThreads) adagrad_kernel(TensorList l, AdagradConsts c) {
  const int t = find_tensor(l);
  const int64_t base = static_cast<int64_t>(blockIdx.x - l.block_start[t]) * kChunk;
  float* w = l.p[0][t];
  const float* g = l.p[1][t];
  float* sum = l.p[2][t];
  const float clr_neg = c.step_dev ? c.step_dev[0] : c.clr_neg;
  const int64_t end = min(base + kChunk, l.n[t]);
  for (int64_t i = base + threadIdx.x; i < end; i += blockDim.x) {
    const float wi = w[i];
    float gi = g[i] * c.grad_scale;
    if (c.decay) gi = fmaf(c.wd, wi, gi);
    const float s = fmaf(gi, gi, sum[i]);
    sum[i] = s;
    const float std_ = sqrtf(s) + c.eps;
    w[i] = wi + (clr_neg * gi) / std_;
  }
}

struct SgdConsts {
  float neg_lr;
  float wd, grad_scale;
  bool decay;
  const float* step_dev;
};

__global__ void __launch_bounds__(kThreads) sgd_kernel(TensorList l, SgdConsts c) {
  const int t = find_tensor(l);
  const int64_t base = static_cast<int64_t>(blockIdx.x - l.block_start[t]) * kChunk;
  float* w = l.p[0][t];
  const float* g = l.p[1][t];
  const float neg_lr = c.step_dev ? c.step_dev[0] : c.neg_lr;
  const int64_t end = min(base + kChunk, l.n[t]);
  for (int64_t i = base + threadIdx.x; i < end; i += blockDim.x) {
    const float wi = w[i];
    float gi = g[i] * c.grad_scale;
    if (c.decay) gi = fmaf(c.wd, wi, gi);
    w[i] = fmaf(neg_lr, gi, wi);
  }
}

// Groups the tensors into lists of up to kMaxTensors (and under 2^31 blocks) and launches `run` per list.
template <class Run>
void multi_tensor(const char* op, const std::vector<std::vector<const Tensor*>>& lists, Run run) {
  const size_t count = lists[0].size();
  for (const auto& l : lists)
    RF_CHECK(l.size() == count, op, ": tensor lists of different lengths (", l.size(), " vs ", count, ")");
  if (count == 0) return;
  const Device dev = lists[0][0]->device();
  RF_CHECK(dev.is_cuda(), op, ": parameters on ", dev.str(), "; the fused optimizers are CUDA-only");
  cuda::detail::DeviceScope scope(dev.index);
  TensorList tl{};
  int64_t blocks = 0;
  auto flush = [&]() {
    if (tl.count == 0) return;
    tl.block_start[tl.count] = static_cast<int32_t>(blocks);
    if (blocks > 0) run(tl, static_cast<unsigned>(blocks));
    cuda::detail::check_launch();
    tl = TensorList{};
    blocks = 0;
  };
  for (size_t i = 0; i < count; ++i) {
    const Tensor* first = lists[0][i];
    for (size_t k = 0; k < lists.size(); ++k) {
      const Tensor* t = lists[k][i];
      RF_CHECK(t != nullptr && t->defined(), op, ": tensor ", i, " of list ", k, " is undefined");
      check_dtype(*t, DType::kF32, op);
      RF_CHECK(t->device() == dev, op, ": tensor ", i, " on ", t->device().str(), ", expected ", dev.str());
      RF_CHECK(t->numel() == first->numel(), op, ": tensor ", i, " of list ", k, " has ", t->numel(),
               " elements, the parameter ", first->numel());
    }
    const int64_t chunks = (first->numel() + kChunk - 1) / kChunk;
    if (chunks == 0) continue;
    if (tl.count == kMaxTensors || blocks + chunks >= (int64_t{1} << 31) - 1) flush();
    for (size_t k = 0; k < lists.size(); ++k) tl.p[k][tl.count] = static_cast<float*>(lists[k][i]->raw());
    tl.n[tl.count] = first->numel();
    tl.block_start[tl.count] = static_cast<int32_t>(blocks);
    ++tl.count;
    blocks += chunks;
  }
  flush();
}

template <class T>
std::vector<const Tensor*> as_const(const std::vector<T*>& v) {
  return {v.begin(), v.end()};
}

std::atomic<int> g_narrowing{2};

}  // namespace

namespace cuda {
void set_sparse_update_narrowing(int narrowing) {
  RF_CHECK(narrowing == 1 || narrowing == 2, "sparse update narrowing must be 1 or 2, got ", narrowing);
  g_narrowing = narrowing;
}
int sparse_update_narrowing() { return g_narrowing; }
void set_deterministic_embedding_update(bool on) { g_deterministic = on; }
bool deterministic_embedding_update() { return g_deterministic; }
}  // namespace cuda

void sparse_sgd_update(Tensor& table, const SparseGrad& grad, float lr) {
  const char* op = "sparse_sgd_update";
  check_table(table, op);
  check_sparse_grad(table, grad, op);
  cuda::detail::DeviceScope scope(table);
  update_from_values(table, nullptr, grad,
                     [&](auto v, auto tag, unsigned grid, int lanes, const auto& dst, const auto& src, RowRange range) {
                       sparse_sgd_kernel<decltype(tag), decltype(v)::value>
                           <<<grid, kThreads, 0, cuda::detail::stream()>>>(dst, range, table.size(1), lanes, Lr{lr}, src);
                     });
}

void sparse_rowwise_adagrad_update(Tensor& table, Tensor& acc, const SparseGrad& grad,
                                   const RowwiseAdagradArgs& args) {
  const char* op = "sparse_rowwise_adagrad_update";
  check_table(table, op);
  check_acc(table, acc, op);
  check_sparse_grad(table, grad, op);
  cuda::detail::DeviceScope scope(table);
  update_from_values(table, &acc, grad,
                     [&](auto v, auto tag, unsigned grid, int lanes, const auto& dst, const auto& src, RowRange range) {
                       cached_pieces(table.size(1), lanes, decltype(v)::value, [&](auto c) {
                         rowwise_adagrad_kernel<decltype(tag), decltype(v)::value, decltype(c)::value>
                             <<<grid, kThreads, 0, cuda::detail::stream()>>>(dst, range, table.size(1), lanes,
                                                                             Lr{args.lr, args.device_lr}, args.eps,
                                                                             args.weight_decay, src);
                       });
                     });
}

void embedding_bags_backward_sgd(const std::vector<Tensor>& indices, const std::vector<Tensor>& offsets,
                                 const Tensor& grad_out, PoolMode mode, const std::vector<Tensor*>& tables, float lr,
                                 const float* device_lr) {
  update_from_bags("embedding_bags_backward_sgd", indices, offsets, grad_out, mode, tables, {},
                   [&](auto v, auto tag, unsigned grid, int lanes, const auto& dst, const auto& src, RowRange range) {
                     sparse_sgd_kernel<decltype(tag), decltype(v)::value><<<grid, kThreads, 0, cuda::detail::stream()>>>(
                         dst, range, dst.dim, lanes, Lr{lr, device_lr}, src);
                   },
                   SgdRow{Lr{lr, device_lr}});
}

void embedding_bags_backward_rowwise_adagrad(const std::vector<Tensor>& indices, const std::vector<Tensor>& offsets,
                                             const Tensor& grad_out, PoolMode mode, const std::vector<Tensor*>& tables,
                                             const std::vector<Tensor*>& accs, const RowwiseAdagradArgs& args) {
  RF_CHECK(accs.size() == tables.size(), "embedding_bags_backward_rowwise_adagrad: ", tables.size(), " tables, ",
           accs.size(), " accumulators");
  update_from_bags("embedding_bags_backward_rowwise_adagrad", indices, offsets, grad_out, mode, tables, accs,
                   [&](auto v, auto tag, unsigned grid, int lanes, const auto& dst, const auto& src, RowRange range) {
                     cached_pieces(dst.dim, lanes, decltype(v)::value, [&](auto c) {
                       rowwise_adagrad_kernel<decltype(tag), decltype(v)::value, decltype(c)::value>
                           <<<grid, kThreads, 0, cuda::detail::stream()>>>(dst, range, dst.dim, lanes,
                                                                           Lr{args.lr, args.device_lr}, args.eps,
                                                                           args.weight_decay, src);
                     });
                   },
                   AdagradRow{Lr{args.lr, args.device_lr}, args.eps, args.weight_decay});
}

void embedding_bag_backward_sgd(const Tensor& indices, const Tensor& offsets, const Tensor& grad_out, PoolMode mode,
                                Tensor& table, float lr) {
  embedding_bags_backward_sgd({indices}, {offsets}, grad_out, mode, {&table}, lr);
}

void embedding_bag_backward_rowwise_adagrad(const Tensor& indices, const Tensor& offsets, const Tensor& grad_out,
                                            PoolMode mode, Tensor& table, Tensor& acc,
                                            const RowwiseAdagradArgs& args) {
  embedding_bags_backward_rowwise_adagrad({indices}, {offsets}, grad_out, mode, {&table}, {&acc}, args);
}

namespace {

// Scalars exactly as src/optim's optimizers: double arithmetic rounded to fp32 once.
AdamConsts adam_consts(const AdamArgs& a) {
  const double t = static_cast<double>(a.step + 1);
  const double lr_d = static_cast<double>(a.lr);
  const double bias_correction1 = 1.0 - std::pow(a.beta1, t);
  const double bias_correction2 = 1.0 - std::pow(a.beta2, t);
  AdamConsts c{};
  c.neg_step_size = static_cast<float>(-(lr_d / bias_correction1));
  c.bc2_sqrt = static_cast<float>(std::sqrt(bias_correction2));
  c.decay_factor = static_cast<float>(1.0 - lr_d * a.weight_decay);
  c.b1 = static_cast<float>(a.beta1);
  c.one_minus_b1 = static_cast<float>(1.0 - a.beta1);
  c.b2 = static_cast<float>(a.beta2);
  c.one_minus_b2 = static_cast<float>(1.0 - a.beta2);
  c.eps = static_cast<float>(a.eps);
  c.wd = static_cast<float>(a.weight_decay);
  c.grad_scale = a.grad_scale;
  c.l2 = !a.decoupled && a.weight_decay != 0.0;
  c.decoupled = a.decoupled && a.weight_decay != 0.0;
  c.step_dev = a.device_scalars;
  return c;
}

SgdConsts sgd_consts(const SgdArgs& a) {
  SgdConsts c{};
  c.neg_lr = -a.lr;
  c.wd = static_cast<float>(a.weight_decay);
  c.grad_scale = a.grad_scale;
  c.decay = a.weight_decay != 0.0;
  c.step_dev = a.device_scalars;
  return c;
}

AdagradConsts adagrad_consts(const AdagradArgs& a) {
  const double t = static_cast<double>(a.step + 1);
  AdagradConsts c{};
  c.clr_neg = static_cast<float>(-(static_cast<double>(a.lr) / (1.0 + (t - 1.0) * a.lr_decay)));
  c.wd = static_cast<float>(a.weight_decay);
  c.eps = static_cast<float>(a.eps);
  c.grad_scale = a.grad_scale;
  c.decay = a.weight_decay != 0.0;
  c.step_dev = a.device_scalars;
  return c;
}

}  // namespace

std::vector<float> step_scalars(const AdamArgs& a) {
  const AdamConsts c = adam_consts(a);
  return {c.neg_step_size, c.bc2_sqrt, c.decay_factor};
}
std::vector<float> step_scalars(const SgdArgs& a) { return {sgd_consts(a).neg_lr}; }
std::vector<float> step_scalars(const AdagradArgs& a) { return {adagrad_consts(a).clr_neg}; }

void fused_adam_step(const std::vector<Tensor*>& params, const std::vector<const Tensor*>& grads,
                     const std::vector<Tensor*>& exp_avg, const std::vector<Tensor*>& exp_avg_sq,
                     const AdamArgs& a) {
  const AdamConsts c = adam_consts(a);
  multi_tensor("fused_adam_step", {as_const(params), grads, as_const(exp_avg), as_const(exp_avg_sq)},
               [&](const TensorList& l, unsigned blocks) {
                 adam_kernel<<<blocks, kThreads, 0, cuda::detail::stream()>>>(l, c);
               });
}

void fused_sgd_step(const std::vector<Tensor*>& params, const std::vector<const Tensor*>& grads, const SgdArgs& a) {
  const SgdConsts c = sgd_consts(a);
  multi_tensor("fused_sgd_step", {as_const(params), grads}, [&](const TensorList& l, unsigned blocks) {
    sgd_kernel<<<blocks, kThreads, 0, cuda::detail::stream()>>>(l, c);
  });
}

void fused_adagrad_step(const std::vector<Tensor*>& params, const std::vector<const Tensor*>& grads,
                        const std::vector<Tensor*>& sums, const AdagradArgs& a) {
  const AdagradConsts c = adagrad_consts(a);
  multi_tensor("fused_adagrad_step", {as_const(params), grads, as_const(sums)},
               [&](const TensorList& l, unsigned blocks) {
                 adagrad_kernel<<<blocks, kThreads, 0, cuda::detail::stream()>>>(l, c);
               });
}

}  // namespace rf
