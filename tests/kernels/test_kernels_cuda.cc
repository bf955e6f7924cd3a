// CUDA kernels against the CPU ones on random inputs (never zeros), each dtype with its tolerance and
// the reason for it. Device outputs are poisoned with NaN first, so an element a kernel forgets to
// write fails. Every test skips (with the reason) when no CUDA device is visible.
#include <gtest/gtest.h>

#include <cstring>

#include "kernels/activation.h"
#include "kernels/cast.h"
#include "kernels/cross.h"
#include "kernels/cuda/cuda_ops.h"
#include "kernels/embedding_bag.h"
#include "kernels/interaction.h"
#include "kernels/linear.h"
#include "kernels/loss.h"
#include "tests/kernels/cuda_test_util.h"

namespace rf::test {
namespace {

// fp32 GEMMs and reductions, K-term sums of products of values <= 1 in another order than BLAS:
// a few K * 2^-24 relative to the sum of |terms| <= K.
Tol fp32_sum_tol(int64_t k) { return {4e-7 * static_cast<double>(k + 1), 1e-5}; }

// ---- cast ----------------------------------------------------------------------------------------------

// Random fp32 values over a wide range, plus random bit patterns (NaN, inf, subnormals) and values
// of every 16-bit pattern for the 16-bit sources.
Tensor random_source(DType dt, int64_t n, uint64_t seed) {
  Rng rng(seed);
  Tensor t = Tensor::empty({n}, dt);
  for (int64_t i = 0; i < n; ++i) {
    const float f = (i % 4 == 0) ? bits_f32(rng.bits32()) : static_cast<float>(rng.uniform(-70000.0, 70000.0));
    if (dt == DType::kF32) t.data<float>()[i] = f;
    else if (dt == DType::kF16) t.data<f16>()[i] = f16{static_cast<uint16_t>(i % 4 == 0 ? i & 0xffff : to_f16(f).bits)};
    else t.data<bf16>()[i] = bf16{static_cast<uint16_t>(i % 4 == 0 ? i & 0xffff : to_bf16(f).bits)};
  }
  return t;
}

TEST(CudaCast, MatchesCpuBitExactly) {
  RF_REQUIRE_GPU();
  const DType types[] = {DType::kF32, DType::kF16, DType::kBF16};
  uint64_t seed = 1;
  for (int64_t n : {int64_t{1}, int64_t{1000}, int64_t{(1 << 20) + 17}})
    for (DType from : types)
      for (DType to : types) {
        SCOPED_TRACE(::testing::Message() << dtype_name(from) << " -> " << dtype_name(to) << " n " << n);
        Tensor src = random_source(from, n, seed++);
        Tensor cpu_dst = Tensor::empty({n}, to);
        cast(src, cpu_dst);
        Tensor dev_dst = poisoned({n}, to, kDev);
        cast(dev(src), dev_dst);
        EXPECT_TRUE(raw_bytes(host(dev_dst)) == raw_bytes(cpu_dst)) << "CUDA and CPU casts differ";
      }
}

TEST(CudaDispatch, MixedDevicesAreRejected) {
  RF_REQUIRE_GPU();
  Tensor x = Tensor::zeros({2, 3}, DType::kF32, kDev), w = Tensor::zeros({4, 3}, DType::kF32, kDev);
  Tensor host_y = Tensor::zeros({2, 4}, DType::kF32);
  EXPECT_THROW(linear_forward(x, w, nullptr, host_y), ShapeError);
}

// ---- linear --------------------------------------------------------------------------------------------

struct LinearCase {
  int64_t batch, in, out;
};
// Aligned shapes (16-byte rows, the fused epilogue) and odd ones (unaligned rows, other algorithms).
const LinearCase kLinearCases[] = {{64, 48, 80}, {7, 13, 5}, {256, 512, 256}, {1, 3, 1}, {33, 128, 1}};

// One configuration: the tensors' dtype and the compute type, checked against the CPU op on the same
// numbers. `ref_compute` is what the CPU runs (it has no fp16 compute: fp16 cases feed the fp32 CPU
// op with fp16-representable inputs, so the products are exact there too).
struct LinearConfig {
  DType tensors, compute, ref_compute;
  Tol y_tol, grad_tol;
  const char* why;
};

void check_linear(const LinearConfig& cfg, bool relu, uint64_t seed) {
  for (const LinearCase& c : kLinearCases) {
    SCOPED_TRACE(::testing::Message() << "batch " << c.batch << " in " << c.in << " out " << c.out << " tensors "
                                      << dtype_name(cfg.tensors) << " compute " << dtype_name(cfg.compute)
                                      << (relu ? " relu" : "") << " (" << cfg.why << ")");
    Rng rng(seed++);
    const DType round_to = cfg.compute == DType::kF16 ? DType::kF16 : DType::kF32;
    Tensor x32 = rounded_f32(rng, {c.batch, c.in}, round_to), w32 = rounded_f32(rng, {c.out, c.in}, round_to);
    Tensor b = rounded_f32(rng, {c.out}, DType::kF32), dy32 = rounded_f32(rng, {c.batch, c.out}, round_to);
    Tensor x = Tensor::empty(x32.shape(), cfg.tensors), w = Tensor::empty(w32.shape(), cfg.tensors),
           dy = Tensor::empty(dy32.shape(), cfg.tensors);
    cast(x32, x);
    cast(w32, w);
    cast(dy32, dy);
    // CPU reference (ReLU applied after, as a layer would).
    Tensor y_ref = Tensor::empty({c.batch, c.out}, cfg.tensors);
    linear_forward(x, w, &b, y_ref, cfg.ref_compute);
    if (relu) relu_forward(y_ref, y_ref);
    Tensor dx_ref = Tensor::empty({c.batch, c.in}, cfg.tensors), dw_ref = Tensor::empty({c.out, c.in}, DType::kF32),
           db_ref = Tensor::empty({c.out}, DType::kF32);
    linear_backward(x, w, dy, &dx_ref, dw_ref, &db_ref, cfg.ref_compute);

    Tensor y = poisoned({c.batch, c.out}, cfg.tensors, kDev);
    Tensor bd = dev(b);
    cuda::linear_forward(dev(x), dev(w), &bd, y, cfg.compute, relu);
    EXPECT_TRUE(close(host(y), values(y_ref), cfg.y_tol, "y"));
    Tensor dx = poisoned({c.batch, c.in}, cfg.tensors, kDev), dw = poisoned({c.out, c.in}, DType::kF32, kDev),
           db = poisoned({c.out}, DType::kF32, kDev);
    linear_backward(dev(x), dev(w), dev(dy), &dx, dw, &db, cfg.compute);
    EXPECT_TRUE(close(host(dx), values(dx_ref), cfg.y_tol, "dx"));
    EXPECT_TRUE(close(host(dw), values(dw_ref), cfg.grad_tol, "dw"));
    EXPECT_TRUE(close(host(db), values(db_ref), fp32_sum_tol(c.batch), "db"));
  }
}

// Operands exact in every compute type used (rounded beforehand), fp32 accumulation on both sides:
// only the summation order differs, K terms of magnitude <= 1.
constexpr Tol kAccumTol{2e-4, 1e-4};
// Outputs stored in bf16: one bf16 rounding (2^-8 relative) on each side, which may land one ulp
// apart, and cuBLASLt's epilogue reads the bias rounded to bf16 (2^-9 |b| <= 2e-3).
constexpr Tol kBf16OutTol{6e-3, 1.6e-2};
// Same for fp16 outputs: ulp 2^-10 relative, bias rounded to fp16.
constexpr Tol kF16OutTol{2e-3, 4e-3};

TEST(CudaLinear, Fp32MatchesCpu) {
  RF_REQUIRE_GPU();
  const LinearConfig cfg{DType::kF32, DType::kF32, DType::kF32, kAccumTol, kAccumTol, "fp32: summation order only"};
  check_linear(cfg, false, 100);
  check_linear(cfg, true, 200);
}

TEST(CudaLinear, Tf32StaysNearFp32) {
  RF_REQUIRE_GPU();
  cuda::set_allow_tf32(true);
  // TF32 keeps 10 mantissa bits of each operand: products off by up to 2^-10 relative, K of them.
  const LinearConfig cfg{DType::kF32, DType::kF32, DType::kF32, {3e-2, 1e-2}, {3e-2, 1e-2},
                         "tf32 operands rounded to 10-bit mantissas"};
  check_linear(cfg, false, 300);
  cuda::set_allow_tf32(false);
}

TEST(CudaLinear, Bf16ComputeOnFp32TensorsMatchesCpu) {
  RF_REQUIRE_GPU();
  const LinearConfig cfg{DType::kF32, DType::kBF16, DType::kBF16, kAccumTol, kAccumTol,
                         "both sides round operands to bf16 the same way; fp32 accumulation"};
  check_linear(cfg, false, 400);
  check_linear(cfg, true, 500);
}

TEST(CudaLinear, Fp16ComputeOnFp32TensorsMatchesCpuOnFp16Values) {
  RF_REQUIRE_GPU();
  const LinearConfig cfg{DType::kF32, DType::kF16, DType::kF32, kAccumTol, kAccumTol,
                         "fp16-representable inputs: products exact on both sides"};
  check_linear(cfg, false, 600);
  check_linear(cfg, true, 700);
}

TEST(CudaLinear, Bf16TensorsMatchCpu) {
  RF_REQUIRE_GPU();
  const LinearConfig cfg{DType::kBF16, DType::kBF16, DType::kBF16, kBf16OutTol, kAccumTol,
                         "bf16 outputs; dw and db stay fp32"};
  check_linear(cfg, false, 800);
  check_linear(cfg, true, 900);
}

TEST(CudaLinear, F16TensorsMatchCpuOnFp16Values) {
  RF_REQUIRE_GPU();
  // The CPU runs fp32 on the same fp16 values and its output is rounded to fp16 by the cast below.
  for (bool relu : {false, true}) {
    Rng rng(1000 + relu);
    const int64_t batch = 48, in = 64, out = 40;
    Tensor x32 = rounded_f32(rng, {batch, in}, DType::kF16), w32 = rounded_f32(rng, {out, in}, DType::kF16);
    Tensor b = rounded_f32(rng, {out}, DType::kF32);
    Tensor y_ref = Tensor::empty({batch, out}, DType::kF32);
    linear_forward(x32, w32, &b, y_ref, DType::kF32);
    if (relu) relu_forward(y_ref, y_ref);
    Tensor x16 = Tensor::empty(x32.shape(), DType::kF16), w16 = Tensor::empty(w32.shape(), DType::kF16);
    cast(x32, x16);
    cast(w32, w16);
    Tensor y = poisoned({batch, out}, DType::kF16, kDev), bd = dev(b);
    cuda::linear_forward(dev(x16), dev(w16), &bd, y, DType::kF16, relu);
    EXPECT_TRUE(close(host(y), values(y_ref), kF16OutTol, "y fp16 (fp16 output rounding, fp16 bias)"));
  }
}

// ---- activations ----------------------------------------------------------------------------------------

TEST(CudaActivation, MatchesCpu) {
  RF_REQUIRE_GPU();
  uint64_t seed = 2000;
  for (DType dt : {DType::kF32, DType::kBF16, DType::kF16})
    for (int64_t n : {int64_t{1}, int64_t{1000}, int64_t{100003}}) {
      SCOPED_TRACE(::testing::Message() << dtype_name(dt) << " n " << n);
      Rng rng(seed++);
      // The CPU has no fp16 activations: it runs fp32 on the fp16 values.
      const DType host_dt = dt == DType::kF16 ? DType::kF32 : dt;
      // fp32: expf on the GPU may be an ulp or two from glibc's. bf16: such an ulp can flip the final
      // bf16 rounding (2^-8 relative at worst). fp16: the CPU result is fp32, the GPU's is one fp16
      // rounding away (2^-11 relative), with subnormals below 6e-5 (the abs term).
      const Tol tol = dt == DType::kF16 ? Tol{1e-6, 1e-3} : dt == DType::kBF16 ? Tol{1e-7, 8e-3} : Tol{1e-7, 2e-6};
      Tensor x32 = Tensor::empty({n}, DType::kF32);
      for (int64_t i = 0; i < n; ++i) x32.data<float>()[i] = static_cast<float>(rng.away_from_zero(0.01, 6.0));
      Tensor dy32 = rounded_f32(rng, {n}, DType::kF32);
      Tensor x = Tensor::empty({n}, dt), dy = Tensor::empty({n}, dt);
      cast(x32, x);
      cast(dy32, dy);
      Tensor xh = Tensor::empty({n}, host_dt), dyh = Tensor::empty({n}, host_dt);
      cast(x, xh);
      cast(dy, dyh);
      for (int which = 0; which < 2; ++which) {
        Tensor y_ref = Tensor::empty({n}, host_dt), dx_ref = Tensor::empty({n}, host_dt);
        Tensor y = poisoned({n}, dt, kDev), dx = poisoned({n}, dt, kDev);
        if (which == 0) {
          relu_forward(xh, y_ref);
          relu_backward(y_ref, dyh, dx_ref);
          relu_forward(dev(x), y);
          relu_backward(y, dev(dy), dx);
        } else {
          sigmoid_forward(xh, y_ref);
          // The backward reads y: feed both sides the same y (the device's, in the storage type).
          sigmoid_forward(dev(x), y);
          Tensor yh = Tensor::empty({n}, host_dt);
          cast(host(y), yh);
          sigmoid_backward(yh, dyh, dx_ref);
          sigmoid_backward(y, dev(dy), dx);
        }
        EXPECT_TRUE(close(host(y), values(y_ref), tol, which ? "sigmoid y" : "relu y"));
        EXPECT_TRUE(close(host(dx), values(dx_ref), tol, which ? "sigmoid dx" : "relu dx"));
      }
    }
}

// ---- embedding bags --------------------------------------------------------------------------------------

struct EmbCase {
  int64_t batch, rows, dim, max_len;
};
// dim 16/128 take the 16-byte path, 13 and 6 the scalar one; 3 rows force heavy repeats.
const EmbCase kEmbCases[] = {{1, 10, 16, 5}, {64, 1000, 16, 20}, {200, 50, 128, 8}, {33, 3, 13, 40}, {500, 4000, 6, 3}};

TEST(CudaEmbeddingBag, ForwardMatchesCpu) {
  RF_REQUIRE_GPU();
  uint64_t seed = 3000;
  for (const EmbCase& c : kEmbCases)
    for (DType dt : {DType::kF32, DType::kF16, DType::kBF16})
      for (PoolMode mode : {PoolMode::kSum, PoolMode::kMean}) {
        SCOPED_TRACE(::testing::Message() << "batch " << c.batch << " rows " << c.rows << " dim " << c.dim << " "
                                          << dtype_name(dt) << (mode == PoolMode::kSum ? " sum" : " mean"));
        Rng rng(seed++);
        Tensor table = random_tensor(rng, {c.rows, c.dim}, dt, nullptr);
        Bags b = random_bags(rng, c.batch, c.rows, c.max_len);
        Tensor idx = i64(b.indices), off = i64(b.offsets);
        Tensor ref = Tensor::empty({c.batch, c.dim}, DType::kF32);
        embedding_bag_forward(table, idx, off, mode, ref);
        Tensor out = poisoned({c.batch, c.dim}, DType::kF32, kDev);
        embedding_bag_forward(dev(table), dev(idx), dev(off), mode, out);
        // Same rows added in the same order in fp32 (the GPU loads two at a time but adds them in order),
        // so the sums should agree to the bit; the tolerance allows a few ulps of a sum of <= 40 rows.
        EXPECT_TRUE(close(host(out), values(ref), {1e-5, 1e-6}, "out"));
      }
}

TEST(CudaEmbeddingBag, BackwardMatchesCpuAndIsDeterministic) {
  RF_REQUIRE_GPU();
  uint64_t seed = 4000;
  for (const EmbCase& c : kEmbCases)
    for (PoolMode mode : {PoolMode::kSum, PoolMode::kMean}) {
      SCOPED_TRACE(::testing::Message() << "batch " << c.batch << " rows " << c.rows << " dim " << c.dim
                                        << (mode == PoolMode::kSum ? " sum" : " mean"));
      Rng rng(seed++);
      Bags b = random_bags(rng, c.batch, c.rows, c.max_len);
      Tensor idx = i64(b.indices), off = i64(b.offsets);
      Tensor go = random_tensor(rng, {c.batch, c.dim}, DType::kF32, nullptr);
      SparseGrad ref = embedding_bag_backward(idx, off, go, mode, c.rows);
      SparseGrad g = embedding_bag_backward(dev(idx), dev(off), dev(go), mode, c.rows);
      ASSERT_EQ(host(g.rows).to_vector<int64_t>(), ref.rows.to_vector<int64_t>());
      // Same lookups summed in the same (row, bag) order in fp32, but the GPU fuses scale * g + acc into
      // an FMA (one rounding fewer per term): a few ulps of sums of up to ~40 terms <= 1.
      EXPECT_TRUE(close(host(g.values), values(ref.values), {1e-5, 1e-5}, "values"));
      SparseGrad again = embedding_bag_backward(dev(idx), dev(off), dev(go), mode, c.rows);
      EXPECT_TRUE(raw_bytes(host(again.values)) == raw_bytes(host(g.values))) << "two runs differ";
    }
}

TEST(CudaEmbeddingBag, BadIndexOrOffsetsThrowDataError) {
  RF_REQUIRE_GPU();
  Rng rng(5);
  Tensor table = dev(rounded_f32(rng, {10, 8}, DType::kF32));
  Tensor out = Tensor::empty({2, 8}, DType::kF32, kDev);
  try {
    embedding_bag_forward(table, dev(i64({1, 2, 10})), dev(i64({0, 2, 3})), PoolMode::kSum, out);
    FAIL() << "expected DataError";
  } catch (const DataError& e) {
    EXPECT_NE(std::string(e.what()).find("bag 1 holds index 10 (position 2"), std::string::npos) << e.what();
  }
  EXPECT_THROW(embedding_bag_forward(table, dev(i64({1, 2, 3})), dev(i64({0, 2, 1})), PoolMode::kSum, out),
               DataError);
  EXPECT_THROW(embedding_bag_backward(dev(i64({-1, 2})), dev(i64({0, 1, 2})), out, PoolMode::kSum, 10), DataError);
}

// Many tables at once against the CPU's table-by-table op: 40 tables (two launches of 32), tables with
// no lookups at all (the first, one in the middle, the last), different row counts.
TEST(CudaEmbeddingBags, ManyTablesMatchCpuAndAreDeterministic) {
  RF_REQUIRE_GPU();
  uint64_t seed = 4500;
  struct C {
    int64_t batch, tables, dim;
  };
  for (C c : {C{64, 26, 16}, C{19, 40, 8}, C{33, 3, 128}, C{8, 5, 6}})
    for (DType dt : {DType::kF32, DType::kBF16, DType::kF16})
      for (PoolMode mode : {PoolMode::kSum, PoolMode::kMean}) {
        SCOPED_TRACE(::testing::Message() << "batch " << c.batch << " tables " << c.tables << " dim " << c.dim << " "
                                          << dtype_name(dt) << (mode == PoolMode::kSum ? " sum" : " mean"));
        Rng rng(seed++);
        std::vector<Tensor> tables, idx, off, dtables, didx, doff;
        std::vector<int64_t> rows;
        for (int64_t t = 0; t < c.tables; ++t) {
          rows.push_back(1 + (t * 37) % 200);
          const bool none = t == 0 || t == c.tables / 2 || t == c.tables - 1;
          Bags b = random_bags(rng, c.batch, rows.back(), none ? 0 : 1 + t % 4);
          tables.push_back(random_tensor(rng, {rows.back(), c.dim}, dt, nullptr));
          idx.push_back(i64(b.indices));
          off.push_back(i64(b.offsets));
          dtables.push_back(dev(tables.back()));
          didx.push_back(dev(idx.back()));
          doff.push_back(dev(off.back()));
        }
        const int64_t width = c.tables * c.dim;
        Tensor ref = Tensor::empty({c.batch, width}, DType::kF32);
        embedding_bags_forward(tables, idx, off, mode, ref);
        Tensor out = poisoned({c.batch, width}, DType::kF32, kDev);
        embedding_bags_forward(dtables, didx, doff, mode, out);
        // The same rows added in the same order in fp32 as the CPU op (see ForwardMatchesCpu).
        EXPECT_TRUE(close(host(out), values(ref), {1e-5, 1e-6}, "out"));

        Tensor go = random_tensor(rng, {c.batch, width}, DType::kF32, nullptr);
        std::vector<SparseGrad> want = embedding_bags_backward(idx, off, go, mode, rows);
        std::vector<SparseGrad> got = embedding_bags_backward(didx, doff, dev(go), mode, rows);
        std::vector<SparseGrad> again = embedding_bags_backward(didx, doff, dev(go), mode, rows);
        ASSERT_EQ(got.size(), want.size());
        for (size_t t = 0; t < want.size(); ++t) {
          SCOPED_TRACE(::testing::Message() << "table " << t);
          ASSERT_EQ(host(got[t].rows).to_vector<int64_t>(), want[t].rows.to_vector<int64_t>());
          // As BackwardMatchesCpuAndIsDeterministic: the GPU's FMA, a few ulps of short sums.
          EXPECT_TRUE(close(host(got[t].values), values(want[t].values), {1e-5, 1e-5}, "values"));
          EXPECT_TRUE(raw_bytes(host(again[t].values)) == raw_bytes(host(got[t].values))) << "two runs differ";
        }
      }
}

// Tables holding 2^32 rows or more together: the sort keys (row_base[t] + row) no longer fit 32 bits and
// the backward sorts 64-bit keys. Only the row counts are that large (the backward never touches a
// table), so this runs in a few MB.
TEST(CudaEmbeddingBags, RowsPast32BitKeysMatchCpu) {
  RF_REQUIRE_GPU();
  const std::vector<int64_t> rows = {3000000000, 7, 2500000000};
  const int64_t batch = 6, dim = 4;
  const std::vector<std::vector<int64_t>> ind = {{2999999999, 5, 2999999999, 0}, {6, 6, 1}, {2499999999, 17, 2499999999, 3, 17}};
  const std::vector<std::vector<int64_t>> offs = {{0, 1, 2, 2, 3, 4, 4}, {0, 1, 1, 2, 2, 3, 3}, {0, 2, 3, 3, 4, 5, 5}};
  std::vector<Tensor> idx, off, didx, doff;
  for (size_t t = 0; t < rows.size(); ++t) {
    idx.push_back(i64(ind[t]));
    off.push_back(i64(offs[t]));
    didx.push_back(dev(idx.back()));
    doff.push_back(dev(off.back()));
  }
  Rng rng(77);
  Tensor go = random_tensor(rng, {batch, 3 * dim}, DType::kF32, nullptr);
  std::vector<SparseGrad> want = embedding_bags_backward(idx, off, go, PoolMode::kSum, rows);
  std::vector<SparseGrad> got = embedding_bags_backward(didx, doff, dev(go), PoolMode::kSum, rows);
  ASSERT_EQ(got.size(), want.size());
  for (size_t t = 0; t < want.size(); ++t) {
    SCOPED_TRACE(::testing::Message() << "table " << t);
    ASSERT_EQ(host(got[t].rows).to_vector<int64_t>(), want[t].rows.to_vector<int64_t>());
    // Sums of at most two fp32 terms in the same order: the GPU's FMA changes at most an ulp.
    EXPECT_TRUE(close(host(got[t].values), values(want[t].values), {1e-6, 1e-6}, "values"));
  }
}

TEST(CudaEmbeddingBags, BadIndexNamesItsTable) {
  RF_REQUIRE_GPU();
  const int64_t T = 36, batch = 4, dim = 8;
  std::vector<Tensor> tables, idx, off;
  std::vector<int64_t> rows(static_cast<size_t>(T), 10);
  for (int64_t t = 0; t < T; ++t) {
    tables.push_back(Tensor::zeros({10, dim}, DType::kF32, kDev));
    idx.push_back(dev(i64({1, 2, 3, t == 34 ? 10 : 4})));
    off.push_back(dev(i64({0, 1, 2, 3, 4})));
  }
  Tensor out = Tensor::empty({batch, T * dim}, DType::kF32, kDev);
  // Pass 2: the check alone on the device (a CUDA graph step's device batches); pass 3: on the host.
  std::vector<Tensor> host_idx, host_off;
  for (int64_t t = 0; t < T; ++t) {
    host_idx.push_back(idx[static_cast<size_t>(t)].to(Device::cpu()));
    host_off.push_back(off[static_cast<size_t>(t)].to(Device::cpu()));
  }
  for (int pass = 0; pass < 4; ++pass) {
    try {
      if (pass == 0) embedding_bags_forward(tables, idx, off, PoolMode::kSum, out);
      else if (pass == 1) embedding_bags_backward(idx, off, out, PoolMode::kSum, rows);
      else if (pass == 2) check_embedding_bags(idx, off, rows);
      else check_embedding_bags(host_idx, host_off, rows);
      ADD_FAILURE() << "expected DataError (pass " << pass << ")";
    } catch (const DataError& e) {
      const std::string msg = e.what();
      EXPECT_NE(msg.find("(table 34): bag 3 holds index 10 (position 3"), std::string::npos) << msg;
    }
  }
}

// ---- interaction ------------------------------------------------------------------------------------------

TEST(CudaInteraction, ForwardAndBackwardMatchCpu) {
  RF_REQUIRE_GPU();
  uint64_t seed = 5000;
  struct C {
    int64_t batch, tables, dim;
  };
  for (C c : {C{3, 2, 4}, C{64, 26, 16}, C{17, 8, 64}, C{5, 26, 128}})
    for (bool self : {false, true}) {
      SCOPED_TRACE(::testing::Message() << "batch " << c.batch << " tables " << c.tables << " dim " << c.dim
                                        << (self ? " self" : ""));
      Rng rng(seed++);
      const int64_t od = interaction_output_dim(c.tables, c.dim, self);
      Tensor dense = random_tensor(rng, {c.batch, c.dim}, DType::kF32, nullptr);
      Tensor emb = random_tensor(rng, {c.batch, c.tables, c.dim}, DType::kF32, nullptr);
      Tensor go = random_tensor(rng, {c.batch, od}, DType::kF32, nullptr);
      Tensor out_ref = Tensor::empty({c.batch, od}, DType::kF32);
      interaction_forward(dense, emb, self, out_ref);
      Tensor gd_ref = Tensor::empty({c.batch, c.dim}, DType::kF32), ge_ref = Tensor::empty(emb.shape(), DType::kF32);
      interaction_backward(dense, emb, go, self, gd_ref, ge_ref);
      Tensor out = poisoned({c.batch, od}, DType::kF32, kDev);
      interaction_forward(dev(dense), dev(emb), self, out);
      Tensor gd = poisoned(gd_ref.shape(), DType::kF32, kDev), ge = poisoned(ge_ref.shape(), DType::kF32, kDev);
      interaction_backward(dev(dense), dev(emb), dev(go), self, gd, ge);
      // Dot products of length dim and sums of F such terms, in another order (FMA on the GPU).
      EXPECT_TRUE(close(host(out), values(out_ref), fp32_sum_tol(c.dim), "out"));
      // Gradients: F terms G_ij z_j of magnitude <= 1 summed per element in another order (the CPU adds
      // pair by pair): a few ulps of a sum up to F in size.
      const Tol gtol{5e-6 * static_cast<double>(c.tables + 2), 1e-5};
      EXPECT_TRUE(close(host(gd), values(gd_ref), gtol, "grad_dense"));
      EXPECT_TRUE(close(host(ge), values(ge_ref), gtol, "grad_emb"));
    }
}

// ---- cross ---------------------------------------------------------------------------------------------------

TEST(CudaCross, ForwardAndBackwardMatchCpu) {
  RF_REQUIRE_GPU();
  uint64_t seed = 6000;
  for (DType compute : {DType::kF32, DType::kBF16})
    for (int64_t rank : {int64_t{0}, int64_t{8}}) {
      SCOPED_TRACE(::testing::Message() << "compute " << dtype_name(compute) << " rank " << rank);
      Rng rng(seed++);
      const int64_t batch = 40, dim = 32;
      CrossWeights wt;
      if (rank == 0) {
        wt.w = random_tensor(rng, {dim, dim}, DType::kF32, nullptr);
      } else {
        wt.v = random_tensor(rng, {rank, dim}, DType::kF32, nullptr);
        wt.u = random_tensor(rng, {dim, rank}, DType::kF32, nullptr);
      }
      wt.b = random_tensor(rng, {dim}, DType::kF32, nullptr);
      Tensor x0 = random_tensor(rng, {batch, dim}, DType::kF32, nullptr);
      Tensor x = random_tensor(rng, {batch, dim}, DType::kF32, nullptr);
      Tensor dy = random_tensor(rng, {batch, dim}, DType::kF32, nullptr);
      Tensor dx0_init = random_tensor(rng, {batch, dim}, DType::kF32, nullptr);
      Tensor y_ref = Tensor::empty({batch, dim}, DType::kF32);
      CrossSaved saved_ref;
      cross_forward(x0, x, wt, y_ref, saved_ref, compute);
      Tensor dx0_ref = dx0_init.clone(), dx_ref = Tensor::empty({batch, dim}, DType::kF32);
      CrossGrads g_ref;
      cross_backward(x0, x, wt, saved_ref, dy, dx0_ref, dx_ref, g_ref, compute);

      CrossWeights wd;
      if (rank == 0) wd.w = dev(wt.w);
      else {
        wd.v = dev(wt.v);
        wd.u = dev(wt.u);
      }
      wd.b = dev(wt.b);
      Tensor y = poisoned({batch, dim}, DType::kF32, kDev);
      CrossSaved saved;
      cross_forward(dev(x0), dev(x), wd, y, saved, compute);
      Tensor dx0 = dev(dx0_init), dx = poisoned({batch, dim}, DType::kF32, kDev);
      CrossGrads g;
      cross_backward(dev(x0), dev(x), wd, saved, dev(dy), dx0, dx, g, compute);
      // GEMMs over dim (and batch for the weight gradients) in fp32 accumulation; bf16 rounds the same
      // operands on both sides.
      const Tol tol{2e-4, 2e-4};
      EXPECT_TRUE(close(host(y), values(y_ref), tol, "y"));
      EXPECT_TRUE(close(host(dx0), values(dx0_ref), tol, "dx0"));
      EXPECT_TRUE(close(host(dx), values(dx_ref), tol, "dx"));
      EXPECT_TRUE(close(host(g.b), values(g_ref.b), fp32_sum_tol(batch), "db"));
      if (rank == 0) {
        EXPECT_TRUE(close(host(g.w), values(g_ref.w), tol, "dw"));
      } else {
        EXPECT_TRUE(close(host(g.u), values(g_ref.u), tol, "du"));
        EXPECT_TRUE(close(host(g.v), values(g_ref.v), tol, "dv"));
      }
    }
}

// ---- loss ------------------------------------------------------------------------------------------------------

TEST(CudaLoss, BceMatchesCpuAndIsDeterministic) {
  RF_REQUIRE_GPU();
  uint64_t seed = 7000;
  for (int64_t n : {int64_t{1}, int64_t{1000}, int64_t{262147}}) {
    SCOPED_TRACE(::testing::Message() << "n " << n);
    Rng rng(seed++);
    Tensor z = random_tensor(rng, {n}, DType::kF32, nullptr, -8.0, 8.0);
    Tensor y = Tensor::empty({n}, DType::kF32);
    for (int64_t i = 0; i < n; ++i) y.data<float>()[i] = rng.uniform() < 0.0 ? 0.0f : 1.0f;
    const double ref = bce_with_logits_forward(z, y);
    const double got = bce_with_logits_forward(dev(z), dev(y));
    // Both reduce in double: only the order of n double additions differs.
    EXPECT_NEAR(got, ref, 1e-12 * std::max(1.0, std::fabs(ref)));
    EXPECT_EQ(got, bce_with_logits_forward(dev(z), dev(y))) << "two runs differ";
    Tensor loss = poisoned({1}, DType::kF32, kDev);
    cuda::bce_with_logits_forward_device(dev(z), dev(y), loss);
    EXPECT_EQ(host(loss).to_vector<float>()[0], static_cast<float>(got));
    Tensor g_ref = Tensor::empty({n}, DType::kF32);
    bce_with_logits_backward(z, y, 128.0f, g_ref);
    Tensor g = poisoned({n}, DType::kF32, kDev);
    bce_with_logits_backward(dev(z), dev(y), 128.0f, g);
    // Same fp32 formula; expf may differ from glibc's by an ulp or two.
    EXPECT_TRUE(close(host(g), values(g_ref), {1e-9, 1e-6}, "grad"));
  }
}

}  // namespace
}  // namespace rf::test
