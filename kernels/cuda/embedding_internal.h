// Internal to kernels/cuda: the sorted-lookup machinery the embedding backward shares with the fused
// sparse optimizers in optim.cu, and the launch geometry of the row kernels.
#pragma once

#include <cstdint>
#include <vector>

#include "src/core/tensor.h"

namespace rf::cuda::detail {

// Tables per launch of the many-table kernels: their pointers travel in the kernel's parameters (56
// bytes a table for the embedding bags, 16 for the fused optimizers); more tables take more launches.
constexpr int kMaxTables = 32;

// The lookups of T tables with one batch sorted together: table t's row r is the key row_base[t] + r
// (the tables' rows stacked in order), so the unique keys come table by table, table t's being
// [table_start[t], table_start[t + 1]). bags[k] = t * batch + bag. Validation (bounds checks on) runs
// in the same pass; one synchronisation for everything. `grouped` names the table in error messages.
struct TableLookups {
  int64_t unique = 0, batch = 0;
  Tensor keys;                       // [>= unique] int64, ascending
  Tensor starts;                     // [>= unique + 1] int32
  Tensor bags;                       // [nnz] int32
  Tensor row_base;                   // [T] int64 (device)
  Tensor inv_len;                    // [T * batch] fp32, 1 / bag length; mean pooling only
  std::vector<int64_t> table_start;  // [T + 1] (host)
};
TableLookups sort_table_lookups(const char* op, bool grouped, const std::vector<Tensor>& indices,
                                const std::vector<Tensor>& offsets, const std::vector<int64_t>& num_rows,
                                int64_t batch, bool mean);

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
