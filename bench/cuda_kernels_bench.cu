// cuda_kernels_bench: achieved bandwidth of the CUDA embedding kernels next to a device-to-device
// cudaMemcpy measured in the same run, and TFLOP/s of recforge's cuBLASLt linear (bias fused) next to
// plain cublasGemmEx on the DLRM Kaggle and DCNv2 (MLPerf) layer shapes in fp32/bf16/fp16. Validates
// before timing, warms up, times with cudaEvents over rotating inputs and reports medians; prints a
// table and one JSON line. Usage: cuda_kernels_bench [--quick]
#include <cublas_v2.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <functional>
#include <memory>
#include <random>
#include <sstream>
#include <string>
#include <vector>

#include "kernels/cast.h"
#include "kernels/cuda/cuda_common.cuh"
#include "kernels/cuda/cuda_ops.h"
#include "kernels/cuda/embedding_internal.h"
#include "kernels/embedding_bag.h"
#include "kernels/linear.h"
#include "kernels/optim_fused.h"
#include "src/core/allocator.h"
#include "src/core/cuda_graph.h"
#include "src/core/precision.h"
#include "src/core/tensor.h"

namespace {

using namespace rf;

#define BENCH_CHECK_CUBLAS(expr)                                                                    \
  do {                                                                                              \
    cublasStatus_t st_ = (expr);                                                                    \
    if (st_ != CUBLAS_STATUS_SUCCESS) throw BackendError(std::string("cuBLAS error ") + #expr);     \
  } while (0)

const Device kDev = Device::cuda(0);

// Host milliseconds to issue one call of `fn(i)` (median of 5 groups of `calls`, each group started on an
// idle device and not waiting for it): next to median_ms it tells whether a call is bound by its
// launches (the two agree) or by the device (median_ms is larger).
double host_ms(const std::function<void(int)>& fn, int calls) {
  std::vector<double> t;
  for (int r = 0; r < 5; ++r) {
    RF_CHECK_CUDA(cudaDeviceSynchronize());
    const auto t0 = std::chrono::steady_clock::now();
    for (int i = 0; i < calls; ++i) fn(i);
    t.push_back(std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count() / calls);
  }
  RF_CHECK_CUDA(cudaDeviceSynchronize());
  std::sort(t.begin(), t.end());
  return t[t.size() / 2];
}

// Median milliseconds per call of `fn(i)` (i rotates the inputs): `reps` timed groups of `inner` calls.
double median_ms(const std::function<void(int)>& fn, int reps, int inner, int warmup = 3) {
  for (int i = 0; i < warmup; ++i) fn(i);
  RF_CHECK_CUDA(cudaDeviceSynchronize());
  cudaEvent_t a, b;
  RF_CHECK_CUDA(cudaEventCreate(&a));
  RF_CHECK_CUDA(cudaEventCreate(&b));
  std::vector<double> t;
  int call = 0;
  for (int r = 0; r < reps; ++r) {
    RF_CHECK_CUDA(cudaEventRecord(a, cuda::detail::stream()));
    for (int i = 0; i < inner; ++i) fn(call++);
    RF_CHECK_CUDA(cudaEventRecord(b, cuda::detail::stream()));
    RF_CHECK_CUDA(cudaEventSynchronize(b));
    float ms = 0.0f;
    RF_CHECK_CUDA(cudaEventElapsedTime(&ms, a, b));
    t.push_back(static_cast<double>(ms) / inner);
  }
  cudaEventDestroy(a);
  cudaEventDestroy(b);
  std::sort(t.begin(), t.end());
  return t[t.size() / 2];
}

Tensor random_device(const Shape& shape, DType dt, uint64_t seed, float lo = -1.0f, float hi = 1.0f) {
  std::mt19937_64 gen(seed);
  std::uniform_real_distribution<float> u(lo, hi);
  Tensor h = Tensor::empty(shape, DType::kF32);
  for (int64_t i = 0; i < h.numel(); ++i) h.data<float>()[i] = u(gen);
  Tensor d32 = h.to(kDev);
  if (dt == DType::kF32) return d32;
  Tensor d = Tensor::empty(shape, dt, kDev);
  cast(d32, d);
  return d;
}

struct Bag {
  Tensor indices, offsets;  // on the device
  int64_t nnz = 0;
};

Bag random_bag(int64_t batch, int64_t pooling, int64_t rows, uint64_t seed) {
  std::mt19937_64 gen(seed);
  std::uniform_int_distribution<int64_t> r(0, rows - 1);
  std::vector<int64_t> idx(static_cast<size_t>(batch * pooling)), off(static_cast<size_t>(batch + 1));
  for (auto& i : idx) i = r(gen);
  for (int64_t b = 0; b <= batch; ++b) off[static_cast<size_t>(b)] = b * pooling;
  Bag bag;
  bag.indices = Tensor::from_vector(idx, {batch * pooling}).to(kDev);
  bag.offsets = Tensor::from_vector(off, {batch + 1}).to(kDev);
  bag.nnz = batch * pooling;
  return bag;
}

// The access pattern's own ceiling: out[i, :] = table[idx[i], :] for rows of `pieces` 16-byte pieces, one
// piece per thread and nothing between the index and the copy. Reading rows scattered over a table far
// larger than L2 costs more per byte than a sequential copy (a 64-byte row is two 32-byte sectors of a
// DRAM page opened for it alone), so the embedding rows are also reported against this.
__global__ void gather_rows_kernel(const uint4* __restrict__ table, const int64_t* __restrict__ idx, int64_t n,
                                   int pieces, uint4* __restrict__ out) {
  const int64_t total = n * pieces, stride = static_cast<int64_t>(gridDim.x) * blockDim.x;
  for (int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < total; i += stride) {
    const int64_t r = i / pieces, p = i - r * pieces;
    out[i] = table[idx[r] * pieces + p];
  }
}

struct Row {
  std::string name;
  double ms = 0, value = 0, ceiling = 0;  // GB/s or TFLOP/s, and the ceiling it compares to
  std::string unit;
};

std::string json_escape(const std::string& s) {
  std::string o;
  for (char c : s) o += (c == '"' ? std::string("\\\"") : std::string(1, c));
  return o;
}

}  // namespace

int main(int argc, char** argv) {
  try {
    const bool quick = argc > 1 && std::strcmp(argv[1], "--quick") == 0;
    if (!cuda_available()) {
      std::printf("cuda_kernels_bench: no CUDA device visible; nothing to measure\n");
      return 0;
    }
    cudaDeviceProp prop{};
    RF_CHECK_CUDA(cudaGetDeviceProperties(&prop, 0));
    std::printf("cuda_kernels_bench on %s (%d SMs, %.0f MiB L2)\n", prop.name, prop.multiProcessorCount,
                prop.l2CacheSize / 1048576.0);
    const int reps = quick ? 7 : 21;
    std::vector<Row> rows;
    // median_ms of a sparse-optimizer call with the lanes per row not narrowed (the geometry before
    // cuda::set_sparse_update_narrowing), the setting restored after.
    auto not_narrowed_ms = [&](const std::function<void(int)>& fn) {
      const int was = cuda::sparse_update_narrowing();
      cuda::set_sparse_update_narrowing(1);
      const double ms = median_ms(fn, reps, 3);
      cuda::set_sparse_update_narrowing(was);
      return ms;
    };

    // ---- copy ceiling: a D2D memcpy of 1 GiB; bytes moved = read + write ---------------------------------
    const size_t copy_bytes_n = size_t{1} << 30;
    void* src = device_allocate(copy_bytes_n, 0);
    void* dst = device_allocate(copy_bytes_n, 0);
    RF_CHECK_CUDA(cudaMemset(src, 1, copy_bytes_n));
    const double copy_ms = median_ms([&](int) { RF_CHECK_CUDA(cudaMemcpyAsync(dst, src, copy_bytes_n, cudaMemcpyDeviceToDevice, cuda::detail::stream())); }, reps, 3);
    const double copy_gbps = 2.0 * copy_bytes_n / (copy_ms * 1e6);
    device_free(src, 0);
    device_free(dst, 0);
    rows.push_back({"memcpy D2D 1 GiB", copy_ms, copy_gbps, copy_gbps, "GB/s"});

    // ---- embedding bags: rows spread far past L2, random indices, rotating batches -----------------------
    cuda::set_embedding_bounds_checks(false);  // inputs are generated in range; a real loader validates
    const int kRotate = 4;
    // The same calls replayed from CUDA graphs, one captured per rotated input: how a train.cuda_graph
    // step runs them (no host work per launch, no gaps between the kernels).
    auto graph_ms = [&](const std::function<void(int)>& fn) {
      std::vector<std::unique_ptr<CudaGraph>> graphs;
      for (int i = 0; i < kRotate; ++i) {
        graphs.push_back(std::make_unique<CudaGraph>(0));
        graphs.back()->capture("cuda_kernels_bench", [&] { fn(i); });
      }
      return median_ms([&](int i) { graphs[static_cast<size_t>(i % kRotate)]->replay(); }, reps, 3);
    };
    // The fused call on the hashed path (cuda::set_deterministic_embedding_update(false)): eagerly, or
    // replayed from CUDA graphs; the setting restored after.
    auto hashed_ms = [&](const std::function<void(int)>& fn, bool replayed) {
      const bool was = cuda::deterministic_embedding_update();
      cuda::set_deterministic_embedding_update(false);
      const double ms = replayed ? graph_ms(fn) : median_ms(fn, reps, 3);
      cuda::set_deterministic_embedding_update(was);
      return ms;
    };
    // Validates the hashed fused row-wise Adagrad against the sorted one on copies of the tables (same
    // start, same batch): fp32 sums of a row's gradients in another order, a few ulps of the update.
    auto check_hashed = [&](const char* what, const std::vector<Tensor>& tables, const std::vector<Tensor>& idx,
                            const std::vector<Tensor>& off, const Tensor& go) {
      std::vector<Tensor> w[2], a[2];
      for (int k = 0; k < 2; ++k) {
        std::vector<Tensor*> wp, ap;
        for (const Tensor& t : tables) {
          w[k].push_back(t.clone());
          a[k].push_back(Tensor::zeros({t.size(0)}, DType::kF32, kDev));
        }
        for (size_t t = 0; t < tables.size(); ++t) {
          wp.push_back(&w[k][t]);
          ap.push_back(&a[k][t]);
        }
        cuda::set_deterministic_embedding_update(k == 0);
        embedding_bags_backward_rowwise_adagrad(idx, off, go, PoolMode::kSum, wp, ap, RowwiseAdagradArgs{});
      }
      cuda::set_deterministic_embedding_update(true);
      double worst = 0;
      for (size_t t = 0; t < tables.size(); ++t) {
        Tensor xs = Tensor::empty(w[0][t].shape(), DType::kF32, kDev), ys = Tensor::empty(w[0][t].shape(), DType::kF32, kDev);
        cast(w[0][t], xs);
        cast(w[1][t], ys);
        const std::vector<float> x = xs.to_vector<float>(), y = ys.to_vector<float>();
        for (size_t i = 0; i < x.size(); ++i)
          worst = std::max(worst, static_cast<double>(std::fabs(x[i] - y[i])) / (1e-3 + std::fabs(x[i])));
      }
      // 16-bit tables may round one ulp apart (2^-8 relative for bf16); fp32 differ in a few ulps.
      if (!(worst < 1e-2)) throw Error(std::string("hashed fused update validation failed (") + what +
                                       "): max relative diff " + std::to_string(worst));
    };
    struct EmbShape {
      const char* name;
      int64_t rows, dim, batch, pooling;
    };
    const EmbShape shapes[] = {{"kaggle dim16 L1", 10000000, 16, 65536 * 4, 1},
                               {"dcnv2 dim128 L8", 2000000, 128, 65536, 8},
                               {"dim64 L32", 2000000, 64, 16384, 32}};
    for (const EmbShape& s : shapes) {
      std::vector<Bag> bags;
      for (int i = 0; i < kRotate; ++i) bags.push_back(random_bag(s.batch, s.pooling, s.rows, 100 + i));
      const int64_t nnz = bags[0].nnz;
      Tensor go = random_device({s.batch, s.dim}, DType::kF32, 7);
      const Tensor table32 = random_device({s.rows, s.dim}, DType::kF32, 11);  // generated once per shape
      for (DType dt : {DType::kF32, DType::kBF16, DType::kF16}) {
        Tensor table = Tensor::empty(table32.shape(), dt, kDev);
        cast(table32, table);
        Tensor out = Tensor::empty({s.batch, s.dim}, DType::kF32, kDev);
        // Validate on the first batch against the CPU op before timing.
        {
          Tensor host_out = Tensor::empty(out.shape(), DType::kF32);
          Tensor ht = table.to(Device::cpu()), hi = bags[0].indices.to(Device::cpu()), ho = bags[0].offsets.to(Device::cpu());
          embedding_bag_forward(ht, hi, ho, PoolMode::kSum, host_out);
          embedding_bag_forward(table, bags[0].indices, bags[0].offsets, PoolMode::kSum, out);
          const std::vector<float> a = out.to_vector<float>(), b = host_out.to_vector<float>();
          double worst = 0;
          for (size_t i = 0; i < a.size(); ++i) worst = std::max(worst, static_cast<double>(std::fabs(a[i] - b[i])));
          if (!(worst < 1e-4)) throw Error("embedding forward validation failed: max |diff| " + std::to_string(worst));
        }
        const double fwd_ms = median_ms(
            [&](int i) { embedding_bag_forward(table, bags[i % kRotate].indices, bags[i % kRotate].offsets, PoolMode::kSum, out); },
            reps, 5);
        const double fwd_bytes = static_cast<double>(nnz) * (s.dim * dtype_size(dt) + 8) + (s.batch + 1) * 8.0 +
                                 static_cast<double>(s.batch) * s.dim * 4;
        rows.push_back({std::string("emb fwd ") + s.name + " " + dtype_name(dt), fwd_ms, fwd_bytes / (fwd_ms * 1e6),
                        copy_gbps, "GB/s"});
        if (dt != DType::kF16) {  // fp16 rows are as wide as bf16 ones
          const int pieces = static_cast<int>(s.dim * dtype_size(dt) / 16);
          Tensor gathered = Tensor::empty({nnz * pieces * 4}, DType::kF32, kDev);
          const double g_ms = median_ms(
              [&](int i) {
                gather_rows_kernel<<<cuda::detail::grid_for(nnz * pieces, 256), 256, 0, cuda::detail::stream()>>>(
                    static_cast<const uint4*>(table.raw()), bags[i % kRotate].indices.data<int64_t>(), nnz, pieces,
                    static_cast<uint4*>(gathered.raw()));
              },
              reps, 5);
          const double g_bytes = static_cast<double>(nnz) * (2.0 * pieces * 16 + 8);
          rows.push_back({std::string("gather ceiling ") + s.name + " " + std::to_string(pieces * 16) + "-byte rows", g_ms,
                          g_bytes / (g_ms * 1e6), copy_gbps, "GB/s"});
        }
        if (dt == DType::kF32) {
          // Backward to a SparseGrad: sort + segmented sum (includes the one sync for the unique count).
          int64_t unique = 0;
          const double bwd_ms = median_ms(
              [&](int i) {
                SparseGrad g = embedding_bag_backward(bags[i % kRotate].indices, bags[i % kRotate].offsets, go,
                                                      PoolMode::kSum, s.rows);
                unique = g.rows.numel();
              },
              reps, 3);
          // Essential bytes: indices and offsets in, one grad_out row per lookup, unique rows and values out.
          const double bwd_bytes = nnz * 8.0 + (s.batch + 1) * 8.0 + static_cast<double>(nnz) * s.dim * 4 +
                                   unique * (8.0 + s.dim * 4.0);
          rows.push_back({std::string("emb bwd ") + s.name, bwd_ms, bwd_bytes / (bwd_ms * 1e6), copy_gbps, "GB/s"});
        }
        // Fused backward + row-wise Adagrad on the table (reads and writes touched rows and accumulators).
        Tensor acc = Tensor::zeros({s.rows}, DType::kF32, kDev);
        int64_t unique = 0;
        {
          SparseGrad g = embedding_bag_backward(bags[0].indices, bags[0].offsets, go, PoolMode::kSum, s.rows);
          unique = g.rows.numel();
        }
        RowwiseAdagradArgs args;
        const std::function<void(int)> fused = [&](int i) {
          embedding_bag_backward_rowwise_adagrad(bags[i % kRotate].indices, bags[i % kRotate].offsets, go,
                                                 PoolMode::kSum, table, acc, args);
        };
        const double upd_ms = median_ms(fused, reps, 3);
        const double upd_bytes = nnz * 8.0 + (s.batch + 1) * 8.0 + static_cast<double>(nnz) * s.dim * 4 +
                                 unique * (2.0 * s.dim * dtype_size(dt) + 8.0 + 8.0);
        rows.push_back({std::string("emb bwd+rowwise adagrad ") + s.name + " " + dtype_name(dt), upd_ms,
                        upd_bytes / (upd_ms * 1e6), copy_gbps, "GB/s"});
        const double wide_ms = not_narrowed_ms(fused);
        rows.push_back({std::string("  same, lanes per row not narrowed ") + s.name + " " + dtype_name(dt), wide_ms,
                        upd_bytes / (wide_ms * 1e6), copy_gbps, "GB/s"});
        const double replay_ms = graph_ms(fused);
        rows.push_back({std::string("  same, replayed from a CUDA graph ") + s.name + " " + dtype_name(dt), replay_ms,
                        upd_bytes / (replay_ms * 1e6), copy_gbps, "GB/s"});
        check_hashed(s.name, {table}, {bags[0].indices}, {bags[0].offsets}, go);
        const double hashed = hashed_ms(fused, false), hashed_replay = hashed_ms(fused, true);
        rows.push_back({std::string("  same, hashed (train.deterministic=false) ") + s.name + " " + dtype_name(dt), hashed,
                        upd_bytes / (hashed * 1e6), copy_gbps, "GB/s"});
        rows.push_back({std::string("  same, hashed, replayed from a CUDA graph ") + s.name + " " + dtype_name(dt),
                        hashed_replay, upd_bytes / (hashed_replay * 1e6), copy_gbps, "GB/s"});
        {
          // The floor of any fused path: the same row-wise Adagrad update of the same rows from gradients
          // already summed (a SparseGrad per rotated batch, computed beforehand): no sort, no hashing, no
          // chain from lookups to bags. Its ratio is to the same essential bytes as the fused rows.
          std::vector<SparseGrad> grads;
          for (int i = 0; i < kRotate; ++i)
            grads.push_back(embedding_bag_backward(bags[i].indices, bags[i].offsets, go, PoolMode::kSum, s.rows));
          const double floor_ms = median_ms(
              [&](int i) { sparse_rowwise_adagrad_update(table, acc, grads[static_cast<size_t>(i % kRotate)], args); }, reps, 3);
          rows.push_back({std::string("  floor: the update alone from summed gradients ") + s.name + " " + dtype_name(dt),
                          floor_ms, upd_bytes / (floor_ms * 1e6), copy_gbps, "GB/s"});
        }
        if (dt == DType::kF32) {
          const double hash_ms = median_ms(
              [&](int i) {
                cuda::detail::hash_table_lookups("bench", false, {bags[i % kRotate].indices}, {bags[i % kRotate].offsets},
                                                 {s.rows}, s.batch, false, s.dim);
              },
              reps, 3);
          rows.push_back({std::string("  of which hashing the lookups ") + s.name + " (share of hashed)", hash_ms,
                          hash_ms / hashed, 1.0, "share"});
          // Where the fused op's time goes: its first phase alone (keys, radix sort, run heads, table starts).
          const double sort_ms = median_ms(
              [&](int i) {
                cuda::detail::sort_table_lookups("bench", false, {bags[i % kRotate].indices}, {bags[i % kRotate].offsets},
                                                 {s.rows}, s.batch, false, false);
              },
              reps, 3);
          rows.push_back({std::string("  of which sorting the lookups ") + s.name + " (share)", sort_ms, sort_ms / upd_ms,
                          1.0, "share"});
          const double upd_host = host_ms(fused, 20);
          rows.push_back({std::string("  host time to issue one call ") + s.name + " (ratio to its ms)", upd_host,
                          upd_host / upd_ms, 1.0, "share"});
        }
      }
    }

    // ---- an embedding collection: DLRM Kaggle shape, 26 tables of 1M rows, dim 16, batch 16384, one lookup
    // per bag. One call for every table (embedding_bags_*) against 26 calls of the one-table ops.
    {
      const int64_t T = 26, rows_t = 1000000, dim = 16, batch = 16384;
      std::vector<Tensor> tables;
      std::vector<int64_t> num_rows(static_cast<size_t>(T), rows_t);
      std::vector<std::vector<Tensor>> idx(kRotate), off(kRotate);
      for (int64_t t = 0; t < T; ++t) tables.push_back(random_device({rows_t, dim}, DType::kF32, 200 + static_cast<uint64_t>(t)));
      for (int i = 0; i < kRotate; ++i)
        for (int64_t t = 0; t < T; ++t) {
          Bag b = random_bag(batch, 1, rows_t, 1000 + static_cast<uint64_t>(i * T + t));
          idx[i].push_back(b.indices);
          off[i].push_back(b.offsets);
        }
      const int64_t nnz = T * batch;
      Tensor out = Tensor::empty({batch, T * dim}, DType::kF32, kDev);
      Tensor go = random_device({batch, T * dim}, DType::kF32, 9);
      // Validate: the collection op against the one-table op of each table.
      {
        embedding_bags_forward(tables, idx[0], off[0], PoolMode::kSum, out);
        const std::vector<float> a = out.to_vector<float>();
        std::vector<SparseGrad> g = embedding_bags_backward(idx[0], off[0], go, PoolMode::kSum, num_rows);
        for (int64_t t = 0; t < T; ++t) {
          Tensor one = Tensor::empty({batch, dim}, DType::kF32, kDev);
          embedding_bag_forward(tables[t], idx[0][t], off[0][t], PoolMode::kSum, one);
          const std::vector<float> b = one.to_vector<float>();
          for (int64_t r = 0; r < batch; ++r)
            for (int64_t d = 0; d < dim; ++d)
              if (a[static_cast<size_t>(r * T * dim + t * dim + d)] != b[static_cast<size_t>(r * dim + d)])
                throw Error("embedding_bags_forward validation failed at table " + std::to_string(t));
          if (g[static_cast<size_t>(t)].rows.numel() == 0) throw Error("embedding_bags_backward validation: no rows");
        }
      }
      std::vector<Tensor> parts;
      for (int64_t t = 0; t < T; ++t) parts.push_back(Tensor::empty({batch, dim}, DType::kF32, kDev));
      const double fwd_bytes = nnz * (dim * 4.0 + 8.0) + T * (batch + 1) * 8.0 + static_cast<double>(batch) * T * dim * 4;
      const double grouped_fwd =
          median_ms([&](int i) { embedding_bags_forward(tables, idx[i % kRotate], off[i % kRotate], PoolMode::kSum, out); }, reps, 5);
      const double loop_fwd = median_ms(
          [&](int i) {
            for (int64_t t = 0; t < T; ++t)
              embedding_bag_forward(tables[t], idx[i % kRotate][t], off[i % kRotate][t], PoolMode::kSum, parts[t]);
            concat_columns(parts, out);
          },
          reps, 5);
      cuda::set_embedding_bounds_checks(true);
      const double checked_fwd =
          median_ms([&](int i) { embedding_bags_forward(tables, idx[i % kRotate], off[i % kRotate], PoolMode::kSum, out); }, reps, 5);
      cuda::set_embedding_bounds_checks(false);
      rows.push_back({"emb fwd 26 tables dim16 b16384, one call", grouped_fwd, fwd_bytes / (grouped_fwd * 1e6), copy_gbps, "GB/s"});
      rows.push_back({"emb fwd 26 tables, 26 calls + concat", loop_fwd, fwd_bytes / (loop_fwd * 1e6), copy_gbps, "GB/s"});
      rows.push_back({"emb fwd 26 tables, one call, bounds checks on", checked_fwd, fwd_bytes / (checked_fwd * 1e6), copy_gbps, "GB/s"});

      int64_t unique = 0;
      for (const SparseGrad& g : embedding_bags_backward(idx[0], off[0], go, PoolMode::kSum, num_rows)) unique += g.rows.numel();
      const double bwd_bytes = nnz * 8.0 + T * (batch + 1) * 8.0 + static_cast<double>(nnz) * dim * 4 + unique * (8.0 + dim * 4.0);
      const double grouped_bwd = median_ms(
          [&](int i) { embedding_bags_backward(idx[i % kRotate], off[i % kRotate], go, PoolMode::kSum, num_rows); }, reps, 3);
      const double loop_bwd = median_ms(
          [&](int i) {
            split_columns(go, nullptr, parts);
            for (int64_t t = 0; t < T; ++t)
              embedding_bag_backward(idx[i % kRotate][t], off[i % kRotate][t], parts[t], PoolMode::kSum, rows_t);
          },
          reps, 3);
      // The training step's path: the collection's backward, then each table's row-wise Adagrad update.
      std::vector<Tensor> accs;
      for (int64_t t = 0; t < T; ++t) accs.push_back(Tensor::zeros({rows_t}, DType::kF32, kDev));
      RowwiseAdagradArgs args;
      const double bwd_update = median_ms(
          [&](int i) {
            std::vector<SparseGrad> g = embedding_bags_backward(idx[i % kRotate], off[i % kRotate], go, PoolMode::kSum, num_rows);
            for (int64_t t = 0; t < T; ++t) sparse_rowwise_adagrad_update(tables[t], accs[t], g[t], args);
          },
          reps, 3);
      // The fused path the trainer takes on one GPU: one sort, one update launch for every table.
      std::vector<Tensor*> tp, ap;
      for (int64_t t = 0; t < T; ++t) {
        tp.push_back(&tables[static_cast<size_t>(t)]);
        ap.push_back(&accs[static_cast<size_t>(t)]);
      }
      const std::function<void(int)> fused = [&](int i) {
        embedding_bags_backward_rowwise_adagrad(idx[i % kRotate], off[i % kRotate], go, PoolMode::kSum, tp, ap, args);
      };
      const double fused_update = median_ms(fused, reps, 3);
      // Essential bytes as the one-table fused rows count them (the SparseGrad round trip is overhead).
      const double upd_bytes = nnz * 8.0 + T * (batch + 1) * 8.0 + static_cast<double>(nnz) * dim * 4 + unique * (2.0 * dim * 4 + 16.0);
      rows.push_back({"emb bwd 26 tables, one call", grouped_bwd, bwd_bytes / (grouped_bwd * 1e6), copy_gbps, "GB/s"});
      rows.push_back({"emb bwd 26 tables, 26 calls", loop_bwd, bwd_bytes / (loop_bwd * 1e6), copy_gbps, "GB/s"});
      rows.push_back({"emb bwd one call + 26 rowwise adagrad updates", bwd_update, upd_bytes / (bwd_update * 1e6), copy_gbps, "GB/s"});
      rows.push_back({"emb bwd + rowwise adagrad 26 tables fused, one call", fused_update, upd_bytes / (fused_update * 1e6), copy_gbps, "GB/s"});
      const double fused_wide = not_narrowed_ms(fused);
      rows.push_back({"  same, lanes per row not narrowed", fused_wide, upd_bytes / (fused_wide * 1e6), copy_gbps, "GB/s"});
      const double fused_replay = graph_ms(fused);
      rows.push_back({"  same, replayed from a CUDA graph", fused_replay, upd_bytes / (fused_replay * 1e6), copy_gbps, "GB/s"});
      check_hashed("26 tables", tables, idx[0], off[0], go);
      const double hashed = hashed_ms(fused, false), hashed_replay = hashed_ms(fused, true);
      rows.push_back({"  same, hashed (train.deterministic=false)", hashed, upd_bytes / (hashed * 1e6), copy_gbps, "GB/s"});
      rows.push_back({"  same, hashed, replayed from a CUDA graph", hashed_replay, upd_bytes / (hashed_replay * 1e6),
                      copy_gbps, "GB/s"});
      {
        std::vector<std::vector<SparseGrad>> grads;
        for (int i = 0; i < kRotate; ++i) grads.push_back(embedding_bags_backward(idx[i], off[i], go, PoolMode::kSum, num_rows));
        // 26 launches: replayed from CUDA graphs so that the host's launch time does not count.
        const double floor_ms = graph_ms([&](int i) {
          for (int64_t t = 0; t < T; ++t)
            sparse_rowwise_adagrad_update(tables[t], accs[t], grads[static_cast<size_t>(i % kRotate)][static_cast<size_t>(t)], args);
        });
        rows.push_back({"  floor: the 26 updates alone from summed gradients, replayed", floor_ms,
                        upd_bytes / (floor_ms * 1e6), copy_gbps, "GB/s"});
        const double hash_ms = median_ms(
            [&](int i) {
              cuda::detail::hash_table_lookups("bench", true, idx[i % kRotate], off[i % kRotate], num_rows, batch, false, dim);
            },
            reps, 3);
        rows.push_back({"  of which hashing the lookups (share of hashed)", hash_ms, hash_ms / hashed, 1.0, "share"});
      }
      const double sort_only = median_ms(
          [&](int i) {
            cuda::detail::sort_table_lookups("bench", true, idx[i % kRotate], off[i % kRotate], num_rows, batch, false, false);
          },
          reps, 3);
      rows.push_back({"  of which sorting the lookups (share)", sort_only, sort_only / fused_update, 1.0, "share"});
      const double fused_host = host_ms(fused, 20);
      rows.push_back({"  host time to issue one fused call (ratio to its ms)", fused_host, fused_host / fused_update, 1.0, "share"});
      cuda::set_embedding_bounds_checks(true);  // the trainer's setting: validation and one synchronisation
      const double checked_update = median_ms(fused, reps, 3);
      cuda::set_embedding_bounds_checks(false);
      rows.push_back({"emb bwd + rowwise adagrad 26 tables fused, bounds checks on", checked_update,
                      upd_bytes / (checked_update * 1e6), copy_gbps, "GB/s"});
    }

    // ---- GEMMs: rf linear (cuBLASLt, bias in the epilogue) vs plain cublasGemmEx -------------------------
    cublasHandle_t blas;
    BENCH_CHECK_CUBLAS(cublasCreate(&blas));
    BENCH_CHECK_CUBLAS(cublasSetStream(blas, cuda::detail::stream()));  // recforge's stream, timed by its events
    struct GemmShape {
      const char* name;
      int64_t m, k, n;  // y[m, n] = x[m, k] w[n, k]^T
    };
    const GemmShape gemms[] = {{"dlrm bot 13->512", 65536, 13, 512},   {"dlrm bot 512->256", 65536, 512, 256},
                               {"dlrm top 367->512", 65536, 367, 512}, {"dlrm top 512->256", 65536, 512, 256},
                               {"dcnv2 cross 3456->512 (V)", 65536, 3456, 512},
                               {"dcnv2 cross 512->3456 (U)", 65536, 512, 3456},
                               {"dcnv2 top 3456->1024", 65536, 3456, 1024}, {"dcnv2 top 1024->1024", 65536, 1024, 1024},
                               {"dcnv2 top 1024->512", 65536, 1024, 512}};
    for (DType dt : {DType::kF32, DType::kBF16, DType::kF16}) {
      for (const GemmShape& g : gemms) {
        if (quick && g.m * g.k * g.n > 65536LL * 1024 * 1024) continue;
        Tensor x = random_device({g.m, g.k}, dt, 21), w = random_device({g.n, g.k}, dt, 22);
        Tensor b = random_device({g.n}, DType::kF32, 23), y = Tensor::empty({g.m, g.n}, dt, kDev);
        Tensor y2 = Tensor::empty({g.m, g.n}, dt, kDev);
        const double flops = 2.0 * g.m * g.n * g.k;
        // Plain cuBLAS: column-major y^T[n, m] = w[n, k] x^T[k, m] (no bias).
        const cudaDataType_t t = cuda_type(dt);
        const float alpha = 1.0f, beta = 0.0f;
        auto cublas_call = [&](int) {
          BENCH_CHECK_CUBLAS(cublasGemmEx(blas, CUBLAS_OP_T, CUBLAS_OP_N, static_cast<int>(g.n), static_cast<int>(g.m),
                                          static_cast<int>(g.k), &alpha, w.raw(), t, static_cast<int>(g.k), x.raw(), t,
                                          static_cast<int>(g.k), &beta, y2.raw(), t, static_cast<int>(g.n),
                                          CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT));
        };
        auto rf_call = [&](int) { cuda::linear_forward(x, w, &b, y, dt); };
        // Validate: rf (with bias) minus bias against cuBLAS, on a sample of elements.
        rf_call(0);
        cublas_call(0);
        {
          Tensor a32 = Tensor::empty(y.shape(), DType::kF32, kDev), b32 = Tensor::empty(y.shape(), DType::kF32, kDev);
          cast(y, a32);
          cast(y2, b32);
          const std::vector<float> av = a32.to_vector<float>(), bv = b32.to_vector<float>(), bias = b.to_vector<float>();
          double worst = 0;
          for (size_t i = 0; i < av.size(); i += 997) {
            const double ref = bv[i] + bias[i % g.n];
            worst = std::max(worst, std::fabs(av[i] - ref) / (1.0 + std::fabs(ref)));
          }
          const double tol = dt == DType::kF32 ? 1e-4 : 3e-2;  // 16-bit outputs: a couple of ulps
          if (!(worst < tol))
            throw Error(std::string("GEMM validation failed on ") + g.name + " " + dtype_name(dt) + ": " +
                        std::to_string(worst));
        }
        const double rf_ms = median_ms(rf_call, reps, 3);
        const double cb_ms = median_ms(cublas_call, reps, 3);
        rows.push_back({std::string("gemm ") + g.name + " " + dtype_name(dt) + " rf+bias", rf_ms,
                        flops / (rf_ms * 1e9), flops / (cb_ms * 1e9), "TFLOP/s"});
      }
    }
    cublasDestroy(blas);

    // ---- report ------------------------------------------------------------------------------------------
    std::printf("\n%-52s %10s %12s %12s %7s\n", "kernel", "ms", "achieved", "ceiling", "ratio");
    for (const Row& r : rows)
      std::printf("%-52s %10.4f %9.1f %-2s %9.1f %-2s %6.2f\n", r.name.c_str(), r.ms, r.value,
                  r.unit == "GB/s" ? "GB" : "TF", r.ceiling, r.unit == "GB/s" ? "GB" : "TF", r.value / r.ceiling);
    std::printf("(bandwidth rows: ceiling = D2D memcpy read+write GB/s; GEMM rows: ceiling = plain cublasGemmEx "
                "TFLOP/s on the same shape, without bias)\n");
    std::ostringstream js;
    js << "{\"bench\":\"cuda_kernels\",\"device\":\"" << json_escape(prop.name) << "\",\"copy_gbps\":" << copy_gbps
       << ",\"rows\":[";
    for (size_t i = 0; i < rows.size(); ++i)
      js << (i ? "," : "") << "{\"name\":\"" << json_escape(rows[i].name) << "\",\"ms\":" << rows[i].ms
         << ",\"value\":" << rows[i].value << ",\"unit\":\"" << rows[i].unit << "\",\"ceiling\":" << rows[i].ceiling
         << ",\"ratio\":" << rows[i].value / rows[i].ceiling << "}";
    js << "]}";
    std::printf("%s\n", js.str().c_str());
    return 0;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "cuda_kernels_bench: %s\n", e.what());
    return 1;
  }
}
