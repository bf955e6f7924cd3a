// CPU embedding bags. Forward: one OpenMP task per bag gathers its rows (fp32/fp16/bf16 storage) and
// pools them in fp32. Backward: the (row, bag) pairs of every lookup are sorted, so each unique row
// becomes one contiguous segment that one thread reduces alone: no atomics, a fixed summation order
// (deterministic), and rows come out ascending as SparseGrad requires.
#include <algorithm>
#include <cstdint>
#include <limits>
#include <vector>

#if defined(_OPENMP) && defined(__GLIBCXX__)
#include <parallel/algorithm>
#define RF_PARALLEL_SORT __gnu_parallel::sort
#else
#define RF_PARALLEL_SORT std::sort
#endif

#include "kernels/cpu/cpu_ops.h"
#include "kernels/cpu/cpu_util.h"
#include "kernels/validate.h"

namespace rf::cpu {
namespace {

using detail::load_f32;

constexpr int64_t kNoBag = std::numeric_limits<int64_t>::max();

// offsets run from 0 to nnz without decreasing (their shape is checks::embedding_bags's to check).
void check_offsets(const char* op, const Tensor& indices, const Tensor& offsets, int64_t batch) {
  const std::string o(op);
  const int64_t nnz = indices.size(0);
  const int64_t* off = offsets.data<int64_t>();
  if (off[0] != 0) throw DataError(o + ": offsets[0] is " + std::to_string(off[0]) + ", expected 0");
  if (off[batch] != nnz)
    throw DataError(o + ": offsets[" + std::to_string(batch) + "] is " + std::to_string(off[batch]) +
                    ", expected the number of indices " + std::to_string(nnz));
  for (int64_t b = 0; b < batch; ++b)
    if (off[b + 1] < off[b])
      throw DataError(o + ": offsets decrease at bag " + std::to_string(b) + " (" + std::to_string(off[b]) + " then " +
                      std::to_string(off[b + 1]) + ")");
}

[[noreturn]] void throw_bad_index(const char* op, int64_t bag, int64_t pos, int64_t index, int64_t rows) {
  throw DataError(std::string(op) + ": bag " + std::to_string(bag) + " holds index " + std::to_string(index) +
                  " (position " + std::to_string(pos) + " of indices), outside the table's rows [0, " +
                  std::to_string(rows) + ")");
}

// Finds the first out-of-range index (lowest bag, then lowest position) so that the error is the
// same whatever the thread count; exceptions cannot leave an OpenMP region, so the loop only records.
void check_indices(const char* op, const int64_t* ind, const int64_t* off, int64_t batch, int64_t rows) {
  int64_t bad_bag = kNoBag;
#pragma omp parallel for schedule(static) reduction(min : bad_bag)
  for (int64_t b = 0; b < batch; ++b) {
    for (int64_t k = off[b]; k < off[b + 1]; ++k) {
      if (ind[k] < 0 || ind[k] >= rows) {
        bad_bag = std::min(bad_bag, b);
        break;
      }
    }
  }
  if (bad_bag == kNoBag) return;
  for (int64_t k = off[bad_bag]; k < off[bad_bag + 1]; ++k)
    if (ind[k] < 0 || ind[k] >= rows) throw_bad_index(op, bad_bag, k, ind[k], rows);
}

template <class T>
void pool(const T* table, const int64_t* ind, const int64_t* off, int64_t batch, int64_t dim, PoolMode mode,
          float* out) {
#pragma omp parallel for schedule(dynamic, 16)
  for (int64_t b = 0; b < batch; ++b) {
    float* o = out + b * dim;
    for (int64_t d = 0; d < dim; ++d) o[d] = 0.0f;
    const int64_t begin = off[b], end = off[b + 1];
    for (int64_t k = begin; k < end; ++k) {
      const T* row = table + ind[k] * dim;
#pragma omp simd
      for (int64_t d = 0; d < dim; ++d) o[d] += load_f32(row[d]);
    }
    if (mode == PoolMode::kMean && end > begin) {
      const float inv = 1.0f / static_cast<float>(end - begin);
      for (int64_t d = 0; d < dim; ++d) o[d] *= inv;
    }
  }
}

// The forward of one table whose bag shapes and offsets have been checked: indices, then pooling.
void forward_checked(const char* op, const Tensor& table, const Tensor& indices, const Tensor& offsets, int64_t batch,
                     PoolMode mode, Tensor& out) {
  const int64_t rows = table.size(0), dim = table.size(1);
  const int64_t* ind = indices.data<int64_t>();
  const int64_t* off = offsets.data<int64_t>();
  check_indices(op, ind, off, batch, rows);
  float* o = out.data<float>();
  switch (table.dtype()) {
    case DType::kF32: pool(table.data<float>(), ind, off, batch, dim, mode, o); break;
    case DType::kF16: pool(table.data<f16>(), ind, off, batch, dim, mode, o); break;
    case DType::kBF16: pool(table.data<bf16>(), ind, off, batch, dim, mode, o); break;
    default: break;
  }
}

// The backward of one table whose bag shapes and offsets have been checked.
SparseGrad backward_checked(const char* op, const Tensor& indices, const Tensor& offsets, const Tensor& grad_out,
                            int64_t batch, PoolMode mode, int64_t num_rows) {
  const int64_t dim = grad_out.size(1);
  const int64_t nnz = indices.size(0);
  const int64_t* ind = indices.data<int64_t>();
  const int64_t* off = offsets.data<int64_t>();
  check_indices(op, ind, off, batch, num_rows);

  struct Lookup {
    int64_t row;
    int64_t bag;
    bool operator<(const Lookup& o) const { return row != o.row ? row < o.row : bag < o.bag; }
  };
  std::vector<Lookup> lookups(static_cast<size_t>(nnz));
#pragma omp parallel for schedule(static)
  for (int64_t b = 0; b < batch; ++b)
    for (int64_t k = off[b]; k < off[b + 1]; ++k) lookups[static_cast<size_t>(k)] = {ind[k], b};
  RF_PARALLEL_SORT(lookups.begin(), lookups.end());

  // Segment starts: the first lookup of each unique row; starts.back() == nnz closes the last one.
  std::vector<int64_t> starts;
  for (int64_t k = 0; k < nnz; ++k)
    if (k == 0 || lookups[static_cast<size_t>(k)].row != lookups[static_cast<size_t>(k - 1)].row) starts.push_back(k);
  const int64_t unique = static_cast<int64_t>(starts.size());
  starts.push_back(nnz);

  SparseGrad g;
  g.rows = Tensor::empty({unique}, DType::kI64);
  g.values = Tensor::empty({unique, dim}, DType::kF32);
  int64_t* rows = g.rows.data<int64_t>();
  float* vals = g.values.data<float>();
  const float* go = grad_out.data<float>();
#pragma omp parallel for schedule(dynamic, 16)
  for (int64_t u = 0; u < unique; ++u) {
    const int64_t begin = starts[static_cast<size_t>(u)], end = starts[static_cast<size_t>(u + 1)];
    rows[u] = lookups[static_cast<size_t>(begin)].row;
    float* v = vals + u * dim;
    for (int64_t d = 0; d < dim; ++d) v[d] = 0.0f;
    for (int64_t k = begin; k < end; ++k) {
      const int64_t b = lookups[static_cast<size_t>(k)].bag;
      const float scale = mode == PoolMode::kMean ? 1.0f / static_cast<float>(off[b + 1] - off[b]) : 1.0f;
      const float* gb = go + b * dim;
#pragma omp simd
      for (int64_t d = 0; d < dim; ++d) v[d] += scale * gb[d];
    }
  }
  return g;
}

}  // namespace

void embedding_bag_forward(const Tensor& table, const Tensor& indices, const Tensor& offsets, PoolMode mode,
                           Tensor& out) {
  const int64_t batch = checks::embedding_bag_forward(table, indices, offsets, out, check_offsets);
  forward_checked("embedding_bag_forward", table, indices, offsets, batch, mode, out);
}

SparseGrad embedding_bag_backward(const Tensor& indices, const Tensor& offsets, const Tensor& grad_out,
                                  PoolMode mode, int64_t num_rows) {
  const int64_t batch = checks::embedding_bag_backward(indices, offsets, grad_out, check_offsets);
  return backward_checked("embedding_bag_backward", indices, offsets, grad_out, batch, mode, num_rows);
}

// Many tables: each table's bags pooled on their own (every thread on one table at a time), then
// interleaved into [batch, T * dim] in one pass; the backward splits the columns and sorts per table.
void embedding_bags_forward(const std::vector<Tensor>& tables, const std::vector<Tensor>& indices,
                            const std::vector<Tensor>& offsets, PoolMode mode, Tensor& out) {
  const int64_t batch = checks::embedding_bags_forward(tables, indices, offsets, out, check_offsets);
  std::vector<Tensor> parts;
  for (size_t t = 0; t < tables.size(); ++t) {
    parts.push_back(Tensor::empty({batch, tables[t].size(1)}, DType::kF32));
    const std::string op = "embedding_bags_forward (table " + std::to_string(t) + ")";
    forward_checked(op.c_str(), tables[t], indices[t], offsets[t], batch, mode, parts.back());
  }
  cpu::concat_columns(parts, out);
}

std::vector<SparseGrad> embedding_bags_backward(const std::vector<Tensor>& indices, const std::vector<Tensor>& offsets,
                                                const Tensor& grad_out, PoolMode mode,
                                                const std::vector<int64_t>& num_rows) {
  const int64_t batch = checks::embedding_bags_backward(indices, offsets, grad_out, num_rows, check_offsets);
  const int64_t dim = grad_out.size(1) / static_cast<int64_t>(num_rows.size());
  std::vector<Tensor> parts;
  for (size_t t = 0; t < num_rows.size(); ++t) parts.push_back(Tensor::empty({batch, dim}, DType::kF32));
  cpu::split_columns(grad_out, nullptr, parts);
  std::vector<SparseGrad> grads;
  for (size_t t = 0; t < num_rows.size(); ++t) {
    const std::string op = "embedding_bags_backward (table " + std::to_string(t) + ")";
    grads.push_back(backward_checked(op.c_str(), indices[t], offsets[t], parts[t], batch, mode, num_rows[t]));
  }
  return grads;
}

// Every table in one parallel pass with a yes/no answer per table (no exceptions inside it); the first
// bad table is then checked again by the throwing checks, which name the bag and position.
void check_bags(const std::vector<Tensor>& indices, const std::vector<Tensor>& offsets,
                const std::vector<int64_t>& num_rows) {
  const int64_t batch = checks::embedding_bags_lists(indices, offsets, num_rows.size(), nullptr);  // shapes only
  const int64_t T = static_cast<int64_t>(indices.size());
  int64_t lookups = 0;
  for (const Tensor& t : indices) lookups += t.numel();
  std::vector<char> ok(static_cast<size_t>(T), 1);
#pragma omp parallel for schedule(dynamic) if (lookups > (int64_t{1} << 16))
  for (int64_t t = 0; t < T; ++t) {
    const size_t i = static_cast<size_t>(t);
    const int64_t* off = offsets[i].data<int64_t>();
    const int64_t* ind = indices[i].data<int64_t>();
    const int64_t nnz = indices[i].numel();
    const uint64_t rows = static_cast<uint64_t>(num_rows[i]);
    bool good = off[0] == 0 && off[batch] == nnz;
    for (int64_t k = 0; k < batch; ++k) good &= off[k + 1] >= off[k];
    // With good offsets the bags cover [0, nnz) exactly: every index is some bag's.
    for (int64_t k = 0; k < nnz; ++k) good &= static_cast<uint64_t>(ind[k]) < rows;
    ok[i] = good;
  }
  for (int64_t t = 0; t < T; ++t) {
    const size_t i = static_cast<size_t>(t);
    if (ok[i]) continue;
    const std::string op = "embedding_bags_forward (table " + std::to_string(t) + ")";
    check_offsets(op.c_str(), indices[i], offsets[i], batch);
    check_indices(op.c_str(), indices[i].data<int64_t>(), offsets[i].data<int64_t>(), batch, num_rows[i]);
  }
}

}  // namespace rf::cpu
