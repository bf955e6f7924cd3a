// linear_forward / linear_backward with bf16 compute (oneDNN's bf16 GEMM) on fp32 tensors, against
// the double reference twice: on the bf16-rounded operands (only fp32 accumulation error is left, so
// the tolerance is fp32's) and on the unrounded ones (bf16's rounding error). Also the bf16 cross layer
// and the refusal of fp16 compute on the CPU.
#include <gtest/gtest.h>

#include <cmath>

#include "kernels/cross.h"
#include "kernels/linear.h"
#include "kernels/ref/linear.h"
#include "kernels/threads.h"
#include "tests/kernels/test_util.h"

namespace rf::test {
namespace {

struct LinearShape {
  int64_t batch, in, out;
};

// Odd sizes, size-1 dimensions, and the DLRM Kaggle shapes' kind of widths past oneDNN's blocking.
const LinearShape kShapes[] = {{1, 1, 1},     {1, 7, 3},     {5, 13, 17},  {33, 64, 31},
                               {128, 100, 1}, {2, 257, 129}, {70, 3, 200}, {256, 367, 512}};

// Against the reference on bf16-rounded operands: the products of two bf16 values are exact in fp32
// (8 + 8 significant bits), so only the fp32 accumulation over K terms of magnitude <= 1 remains: a
// few K * 2^-24, as the fp32 GEMM.
Tol rounded_tol(int64_t k) { return {2e-7 * static_cast<double>(k) + 1e-7, 1e-6}; }

// Against the unrounded reference: RNE to bf16's 8 significant bits moves each operand by at most 2^-8
// relative, so each product by at most 2^-7 (the rel term). Over K terms these errors are independent
// and zero-mean: with |x|, |w| <= 1 (product rms 1/3) their sum has a standard deviation below
// 2^-7 / sqrt(3) / 3 * sqrt(K) ~ 0.0015 sqrt(K); the abs term allows 6.5 of those.
Tol unrounded_tol(int64_t k) { return {0.01 * std::sqrt(static_cast<double>(k)) + 1e-6, 1.0 / 128}; }

// bf16 output tensors: the rounded-operand error, then one rounding of the result (2^-8 relative).
Tol bf16_out_tol(int64_t k) { return {2e-7 * static_cast<double>(k) + 1e-7, 1.0 / 256}; }

// The values the bf16 GEMM multiplies: each fp32 value rounded to nearest even bf16.
std::vector<double> rounded(const std::vector<double>& v) {
  std::vector<double> out(v.size());
  for (size_t i = 0; i < v.size(); ++i) out[i] = to_f32(to_bf16(static_cast<float>(v[i])));
  return out;
}

void run_forward(const LinearShape& s, bool bias, uint64_t seed) {
  SCOPED_TRACE(::testing::Message() << "batch " << s.batch << " in " << s.in << " out " << s.out
                                    << (bias ? " bias" : " no bias"));
  Rng rng(seed);
  std::vector<double> x, w, b;
  Tensor xt = random_tensor(rng, {s.batch, s.in}, DType::kF32, &x);
  Tensor wt = random_tensor(rng, {s.out, s.in}, DType::kF32, &w);
  Tensor bt = random_tensor(rng, {s.out}, DType::kF32, &b);
  Tensor yt = Tensor::empty({s.batch, s.out}, DType::kF32);
  poison(yt);
  linear_forward(xt, wt, bias ? &bt : nullptr, yt, DType::kBF16);

  // The bias is added in fp32, unrounded, in both references.
  std::vector<double> y_rounded(static_cast<size_t>(s.batch * s.out)), y_exact(y_rounded.size());
  const std::vector<double> xr = rounded(x), wr = rounded(w);
  ref::linear_forward(xr.data(), wr.data(), bias ? b.data() : nullptr, y_rounded.data(), s.batch, s.in, s.out);
  ref::linear_forward(x.data(), w.data(), bias ? b.data() : nullptr, y_exact.data(), s.batch, s.in, s.out);
  EXPECT_TRUE(close(yt, y_rounded, rounded_tol(s.in), "y vs rounded-operand reference"));
  EXPECT_TRUE(close(yt, y_exact, unrounded_tol(s.in), "y vs fp32 reference"));
}

void run_backward(const LinearShape& s, bool with_dx, bool with_db, uint64_t seed) {
  SCOPED_TRACE(::testing::Message() << "batch " << s.batch << " in " << s.in << " out " << s.out);
  Rng rng(seed);
  std::vector<double> x, w, dy;
  Tensor xt = random_tensor(rng, {s.batch, s.in}, DType::kF32, &x);
  Tensor wt = random_tensor(rng, {s.out, s.in}, DType::kF32, &w);
  Tensor dyt = random_tensor(rng, {s.batch, s.out}, DType::kF32, &dy);
  Tensor dxt = Tensor::empty({s.batch, s.in}, DType::kF32), dwt = Tensor::empty({s.out, s.in}, DType::kF32),
         dbt = Tensor::empty({s.out}, DType::kF32);
  poison(dxt);
  poison(dwt);
  poison(dbt);
  linear_backward(xt, wt, dyt, with_dx ? &dxt : nullptr, dwt, with_db ? &dbt : nullptr, DType::kBF16);

  std::vector<double> dx_r(x.size()), dw_r(w.size()), db_r(static_cast<size_t>(s.out));
  std::vector<double> dx_e(x.size()), dw_e(w.size()), db_e(static_cast<size_t>(s.out));
  const std::vector<double> xr = rounded(x), wr = rounded(w), dyr = rounded(dy);
  ref::linear_backward(xr.data(), wr.data(), dyr.data(), dx_r.data(), dw_r.data(), db_r.data(), s.batch, s.in,
                       s.out);
  ref::linear_backward(x.data(), w.data(), dy.data(), dx_e.data(), dw_e.data(), db_e.data(), s.batch, s.in, s.out);
  if (with_dx) {
    EXPECT_TRUE(close(dxt, dx_r, rounded_tol(s.out), "dx vs rounded-operand reference"));
    EXPECT_TRUE(close(dxt, dx_e, unrounded_tol(s.out), "dx vs fp32 reference"));
  }
  EXPECT_TRUE(close(dwt, dw_r, rounded_tol(s.batch), "dw vs rounded-operand reference"));
  EXPECT_TRUE(close(dwt, dw_e, unrounded_tol(s.batch), "dw vs fp32 reference"));
  // db sums the unrounded fp32 dy: an fp32 reduction over the batch, no bf16 error at all.
  if (with_db) {
    EXPECT_TRUE(close(dbt, db_e, rounded_tol(s.batch), "db vs fp32 reference"));
  }
}

TEST(LinearBf16Compute, ForwardMatchesReference) {
  uint64_t seed = 1000;
  for (const auto& s : kShapes)
    for (bool bias : {true, false}) run_forward(s, bias, seed++);
}

TEST(LinearBf16Compute, BackwardMatchesReference) {
  uint64_t seed = 2000;
  for (const auto& s : kShapes) run_backward(s, true, true, seed++);
  run_backward({9, 11, 5}, false, true, seed++);
  run_backward({9, 11, 5}, true, false, seed++);
}

TEST(LinearBf16Compute, OneAndTwoThreads) {
  const int before = num_threads();
  for (int threads : {1, 2}) {
    set_num_threads(threads);
    run_forward({65, 127, 33}, true, 7);
    run_backward({65, 127, 33}, true, true, 8);
  }
  set_num_threads(before);
}

// The cached bf16 scratch only grows: a small call after a large one, and a large one after that, must
// read only their own operands (the same bits as a first call).
TEST(LinearBf16Compute, ScratchReuseLeavesNoTrace) {
  auto run = [&](int64_t batch, int64_t in, int64_t out, uint64_t seed) {
    Rng r(seed);
    Tensor x = random_tensor(r, {batch, in}, DType::kF32, nullptr);
    Tensor w = random_tensor(r, {out, in}, DType::kF32, nullptr);
    Tensor y = Tensor::empty({batch, out}, DType::kF32);
    linear_forward(x, w, nullptr, y, DType::kBF16);
    return values(y);
  };
  const std::vector<double> small_first = run(3, 5, 4, 1);
  const std::vector<double> large_first = run(300, 200, 100, 2);
  EXPECT_EQ(run(3, 5, 4, 1), small_first);
  EXPECT_EQ(run(300, 200, 100, 2), large_first);
}

// bf16 tensors with bf16 compute go to oneDNN without conversion; only the output is rounded.
TEST(LinearBf16Compute, Bf16TensorsForwardAndBackward) {
  const LinearShape s{17, 45, 23};
  Rng rng(77);
  std::vector<double> x, w, b, dy;
  Tensor xt = random_tensor(rng, {s.batch, s.in}, DType::kBF16, &x);
  Tensor wt = random_tensor(rng, {s.out, s.in}, DType::kBF16, &w);
  Tensor bt = random_tensor(rng, {s.out}, DType::kF32, &b);
  Tensor dyt = random_tensor(rng, {s.batch, s.out}, DType::kBF16, &dy);
  Tensor yt = Tensor::empty({s.batch, s.out}, DType::kBF16), dxt = Tensor::empty({s.batch, s.in}, DType::kBF16);
  Tensor dwt = Tensor::empty({s.out, s.in}, DType::kF32), dbt = Tensor::empty({s.out}, DType::kF32);
  linear_forward(xt, wt, &bt, yt, DType::kBF16);
  linear_backward(xt, wt, dyt, &dxt, dwt, &dbt, DType::kBF16);
  std::vector<double> y(static_cast<size_t>(s.batch * s.out)), dx(x.size()), dw(w.size()), db(b.size());
  ref::linear_forward(x.data(), w.data(), b.data(), y.data(), s.batch, s.in, s.out);
  ref::linear_backward(x.data(), w.data(), dy.data(), dx.data(), dw.data(), db.data(), s.batch, s.in, s.out);
  EXPECT_TRUE(close(yt, y, bf16_out_tol(s.in), "y"));
  EXPECT_TRUE(close(dxt, dx, bf16_out_tol(s.out), "dx"));
  EXPECT_TRUE(close(dwt, dw, rounded_tol(s.batch), "dw"));
  EXPECT_TRUE(close(dbt, db, rounded_tol(s.batch), "db"));
}

// The cross layer passes its compute type to its GEMMs: full and low rank against the fp32 layer.
TEST(LinearBf16Compute, CrossLayerFollowsComputeType) {
  const int64_t batch = 24, dim = 40, rank = 8;
  for (bool low_rank : {false, true}) {
    SCOPED_TRACE(low_rank ? "low rank" : "full rank");
    Rng rng(low_rank ? 5 : 6);
    CrossWeights wt;
    // Weights scaled like the model's initialisation so that h stays O(1).
    if (low_rank) {
      wt.v = random_tensor(rng, {rank, dim}, DType::kF32, nullptr, -0.3, 0.3);
      wt.u = random_tensor(rng, {dim, rank}, DType::kF32, nullptr, -0.3, 0.3);
    } else {
      wt.w = random_tensor(rng, {dim, dim}, DType::kF32, nullptr, -0.3, 0.3);
    }
    wt.b = random_tensor(rng, {dim}, DType::kF32, nullptr);
    Tensor x0 = random_tensor(rng, {batch, dim}, DType::kF32, nullptr);
    Tensor x = random_tensor(rng, {batch, dim}, DType::kF32, nullptr);
    Tensor dy = random_tensor(rng, {batch, dim}, DType::kF32, nullptr);
    std::vector<double> y[2], dx[2], dx0[2];
    int i = 0;
    for (DType compute : {DType::kF32, DType::kBF16}) {
      Tensor yt = Tensor::empty({batch, dim}, DType::kF32), dxt = Tensor::empty({batch, dim}, DType::kF32);
      Tensor dx0t = Tensor::zeros({batch, dim}, DType::kF32);
      CrossSaved saved;
      CrossGrads grads;
      cross_forward(x0, x, wt, yt, saved, compute);
      cross_backward(x0, x, wt, saved, dy, dx0t, dxt, grads, compute);
      y[i] = values(yt);
      dx[i] = values(dxt);
      dx0[i] = values(dx0t);
      ++i;
    }
    // The bf16 GEMMs' rounding error (the unrounded tolerance over K = dim), carried through at most
    // two GEMMs and a product with |x0| <= 1.
    const Tol tol = unrounded_tol(2 * dim);
    EXPECT_TRUE(close(y[1], y[0], tol, "y"));
    EXPECT_TRUE(close(dx[1], dx[0], tol, "dx"));
    EXPECT_TRUE(close(dx0[1], dx0[0], tol, "dx0"));
    EXPECT_NE(y[1], y[0]) << "bf16 compute gave the fp32 result bit for bit: the compute type was ignored";
  }
}

TEST(LinearBf16Compute, Fp16ComputeRefusedOnCpu) {
  Tensor x = Tensor::zeros({4, 3}, DType::kF32), w = Tensor::zeros({5, 3}, DType::kF32),
         y = Tensor::zeros({4, 5}, DType::kF32), dy = Tensor::zeros({4, 5}, DType::kF32),
         dw = Tensor::zeros({5, 3}, DType::kF32);
  EXPECT_THROW(linear_forward(x, w, nullptr, y, DType::kF16), BackendError);
  EXPECT_THROW(linear_backward(x, w, dy, nullptr, dw, nullptr, DType::kF16), BackendError);
  try {
    linear_forward(x, w, nullptr, y, DType::kF16);
  } catch (const BackendError& e) {
    EXPECT_NE(std::string(e.what()).find("needs the CUDA backend"), std::string::npos) << e.what();
  }
  EXPECT_THROW(linear_forward(x, w, nullptr, y, DType::kI32), ShapeError);
}

}  // namespace
}  // namespace rf::test
