// Internal to kernels/cuda (included by .cu files only): the sorted-lookup machinery the embedding
// backward shares with the fused sparse optimizers in optim.cu, the reduction of a touched row's
// gradient both use, and the launch geometry of the row kernels.
#pragma once

#include <cstdint>
#include <vector>

#include "kernels/cuda/cuda_common.cuh"
#include "src/core/tensor.h"

namespace rf::cuda::detail {

// Tables per launch of the many-table kernels: their pointers travel in the kernel's parameters (56
// bytes a table for the embedding bags, 16 for the fused optimizers); more tables take more launches.
constexpr int kMaxTables = 32;

// The lookups of T tables with one batch sorted together: table t's row r is the key row_base[t] + r
// (the tables' rows stacked in order), so the unique keys come table by table, table t's being
// [table_start[t], table_start[t + 1]). bags[k] = t * batch + bag. Validation (bounds checks on) runs
// in the same pass; one synchronisation for everything, and none when the caller needs no sizes on the
// host and the bounds checks are off. `grouped` names the table in error messages.
struct TableLookups {
  int64_t batch = 0;
  Tensor starts;                     // [nnz + 1] int32: unique row u's lookups are [starts[u], starts[u + 1])
  Tensor bags;                       // [nnz] int32
  Tensor row_base;                   // [T] int64 (device)
  Tensor inv_len;                    // [T * batch] fp32, 1 / bag length; mean pooling only
  Tensor unique_row;                 // [nnz] int64: unique row u's row in its own table (u < unique)
  Tensor unique_table;               // [nnz] int32: ... and that table
  Tensor table_start_dev;            // [T + 1] int64 (device): always written
  std::vector<int64_t> nnz_of;       // [T] lookups per table (host): bounds the unique rows of each table
  int64_t unique = 0;                // with table_start: filled after the one sync, else empty
  std::vector<int64_t> table_start;  // [T + 1] (host)
  bool sizes_on_host() const { return !table_start.empty(); }
};
// sizes_on_host: synchronise and fill table_start / unique (the SparseGrad backward needs them for its
// shapes); otherwise the caller reads table_start_dev on the device and no synchronisation happens
// unless the bounds checks are on (they throw before anything is written).
TableLookups sort_table_lookups(const char* op, bool grouped, const std::vector<Tensor>& indices,
                                const std::vector<Tensor>& offsets, const std::vector<int64_t>& num_rows,
                                int64_t batch, bool mean, bool sizes_on_host);

// Gradient row piece [d0, d0 + V) of unique row u, reduced from its sorted lookups in ascending bag
// order: table t = bags[starts[u]] / batch, its gradient columns [t * dim, (t + 1) * dim) of grad_out
// (row stride `stride`), each bag's row scaled by 1 / its length for mean pooling. The embedding
// backward stores it; the fused optimizers apply it at once, so both give the same bits.
struct FromBags {
  const float* grad_out;
  int64_t stride, dim, batch;
  const float* inv_len;  // mean pooling: 1 / bag length per t * batch + bag; nullptr for sum
  const int32_t* starts;
  const int32_t* bags;
  template <int V>
  __device__ void operator()(int64_t u, int64_t d0, float (&g)[V]) const {
#pragma unroll
    for (int i = 0; i < V; ++i) g[i] = 0.0f;
    const int32_t begin = starts[u], end = starts[u + 1];
    const int64_t t = bags[begin] / batch;
    const float* g_t = grad_out + t * dim + d0;
    for (int32_t k = begin; k < end; ++k) {
      const int64_t tb = bags[k];
      const float scale = inv_len ? inv_len[tb] : 1.0f;
      float x[V];
      load_vec<float, V>(g_t + (tb - t * batch) * stride, x);
#pragma unroll
      for (int i = 0; i < V; ++i) g[i] += scale * x[i];
    }
  }
};

// Unique row u's table t and row within t, written once per unique row by the sort (so the kernels
// that update rows read them coalesced instead of chasing starts -> bags -> keys).
struct UniqueRows {
  const int64_t* rows;
  const int32_t* tables;
  __device__ int64_t row(int64_t u, int64_t& t) const {
    t = tables[u];
    return rows[u];
  }
};
inline UniqueRows unique_rows(const TableLookups& s) {
  return {s.unique_row.data<int64_t>(), s.unique_table.data<int32_t>()};
}

// The FromBags of sorted lookups whose tables' gradients are grad_out's columns, `dim` per table.
inline FromBags from_bags(const TableLookups& s, const Tensor& grad_out, int64_t dim) {
  return {grad_out.data<float>(), grad_out.size(1), dim, s.batch,
          s.inv_len.defined() ? s.inv_len.data<float>() : nullptr, s.starts.data<int32_t>(), s.bags.data<int32_t>()};
}

// The lookups of up to kMaxTables tables hashed by row instead of sorted: the fused update's
// non-deterministic path (cuda::set_deterministic_embedding_update(false)). One launch inserts every
// lookup's key (row_base[t] + row) into an open-addressing table of `cap` slots (a power of two >= 2 x
// lookups, linear probing) and counts the lookups per slot; a row's second lookup gives it a gradient
// row in `multi` (zeroed there). The update kernel then runs one lane group per lookup: a row looked up
// once is updated from its bag's gradient row at once; the lookups of a row looked up more often add
// into its `multi` row with float atomics (so the sum's order, and its last bits, vary from run to
// run), and the last of them to arrive updates the row. Nothing is synchronised unless the bounds
// checks are on (validation in the same pass, one synchronisation, the throw before any table is written).
// One slot of the open-addressing table: 16 bytes, so the update kernel reads a row's key and multi row
// in one load.
struct HashSlot {
  unsigned long long key;  // 0: empty, else the lookup's key + 1
  int32_t count;           // lookups of the row (the update counts them down)
  int32_t multi_plus_one;  // 0: looked up once, else its row of `multi` + 1
};
struct HashedLookups {
  int64_t batch = 0, nnz = 0, cap = 0, dim = 0;
  Tensor slots;    // [2 * cap + 1] int64 words: [cap] HashSlot, then the multi-row counter; one memset zeroes it
  Tensor slot_of;  // [nnz] int32: each lookup's slot
  Tensor bag_of;   // [nnz] int32: t * batch + bag
  Tensor inv_len;  // [T * batch] fp32, mean pooling only
  Tensor multi;    // [multi_rows_bound, dim] fp32: the summed gradient rows of rows looked up more than once
  std::vector<int64_t> row_base;  // [T] (host)
  HashSlot* table() const { return static_cast<HashSlot*>(slots.raw()); }
  int32_t* multi_count() const { return reinterpret_cast<int32_t*>(static_cast<int64_t*>(slots.raw()) + 2 * cap); }
};
// The multi rows a call can need: table t has at most min(lookups_t / 2, rows_t) rows looked up twice or
// more (at least 1, the buffer's minimum).
int64_t multi_rows_bound(const std::vector<Tensor>& indices, const std::vector<int64_t>& num_rows);
// Whether a call can take the hashed path: at most kMaxTables tables, fewer than 2^29 lookups (slots fit
// int32), and a multi-row scratch of at most 1 GiB (rows of `dim` fp32); otherwise it sorts.
bool hashable(const std::vector<Tensor>& indices, const std::vector<int64_t>& num_rows, int64_t dim);
HashedLookups hash_table_lookups(const char* op, bool grouped, const std::vector<Tensor>& indices,
                                 const std::vector<Tensor>& offsets, const std::vector<int64_t>& num_rows,
                                 int64_t batch, bool mean, int64_t dim);

// The kernels' 32-bit lookup limit (a checks::BagCheck).
void check_lookup_count(const char* op, const Tensor& indices, const Tensor& offsets, int64_t batch);

// Lanes per row (a power of two <= 32) so that lanes * vec covers dim in as few passes as possible.
inline int lanes_for(int64_t dim, int vec) {
  const int64_t need = (dim + vec - 1) / vec;
  int g = 1;
  while (g < 32 && g < need) g *= 2;
  return g;
}

}  // namespace rf::cuda::detail
