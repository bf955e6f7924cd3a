// linear_forward / linear_backward (OpenBLAS path) against the double reference in kernels/ref, in
// fp32 and bf16, and the reference backward against central finite differences.
#include <gtest/gtest.h>

#include "kernels/linear.h"
#include "kernels/ref/linear.h"
#include "kernels/threads.h"
#include "tests/kernels/test_util.h"

namespace rf::test {
namespace {

struct LinearShape {
  int64_t batch, in, out;
};

// Odd sizes, batch 1, in/out 1, and sizes past OpenBLAS's blocking thresholds.
const LinearShape kShapes[] = {{1, 1, 1}, {1, 7, 3}, {5, 13, 17}, {33, 64, 31}, {128, 100, 1}, {2, 257, 129}, {70, 3, 200}};

// fp32 GEMM against exact double: fp32 summation order over K terms of magnitude <= 1 gives an error
// of a few K * 2^-24 at worst, so K * 2e-7 plus a relative fp32 term.
Tol fp32_tol(int64_t k) { return {2e-7 * static_cast<double>(k) + 1e-7, 1e-6}; }
// bf16 outputs: the same fp32 accumulation, then one rounding to bf16's 8-bit mantissa (half an ulp
// is 2^-9 relative; 2^-8 leaves room for the accumulation error near a rounding boundary).
Tol bf16_tol(int64_t k) { return {2e-7 * static_cast<double>(k) + 1e-7, 1.0 / 256}; }

void run_forward(const LinearShape& s, DType dt, bool bias, uint64_t seed) {
  SCOPED_TRACE(::testing::Message() << "batch " << s.batch << " in " << s.in << " out " << s.out << " "
                                    << dtype_name(dt) << (bias ? " bias" : " no bias"));
  Rng rng(seed);
  std::vector<double> x, w, b;
  Tensor xt = random_tensor(rng, {s.batch, s.in}, dt, &x);
  Tensor wt = random_tensor(rng, {s.out, s.in}, dt, &w);
  Tensor bt = random_tensor(rng, {s.out}, DType::kF32, &b);
  Tensor yt = Tensor::empty({s.batch, s.out}, dt);
  poison(yt);
  linear_forward(xt, wt, bias ? &bt : nullptr, yt);
  std::vector<double> y(static_cast<size_t>(s.batch * s.out));
  ref::linear_forward(x.data(), w.data(), bias ? b.data() : nullptr, y.data(), s.batch, s.in, s.out);
  EXPECT_TRUE(close(yt, y, dt == DType::kF32 ? fp32_tol(s.in) : bf16_tol(s.in), "y"));
}

void run_backward(const LinearShape& s, DType dt, bool with_dx, bool with_db, uint64_t seed) {
  SCOPED_TRACE(::testing::Message() << "batch " << s.batch << " in " << s.in << " out " << s.out << " "
                                    << dtype_name(dt));
  Rng rng(seed);
  std::vector<double> x, w, dy;
  Tensor xt = random_tensor(rng, {s.batch, s.in}, dt, &x);
  Tensor wt = random_tensor(rng, {s.out, s.in}, dt, &w);
  Tensor dyt = random_tensor(rng, {s.batch, s.out}, dt, &dy);
  Tensor dxt = Tensor::empty({s.batch, s.in}, dt), dwt = Tensor::empty({s.out, s.in}, DType::kF32),
         dbt = Tensor::empty({s.out}, DType::kF32);
  poison(dxt);
  poison(dwt);
  poison(dbt);
  linear_backward(xt, wt, dyt, with_dx ? &dxt : nullptr, dwt, with_db ? &dbt : nullptr);
  std::vector<double> dx(x.size()), dw(w.size()), db(static_cast<size_t>(s.out));
  ref::linear_backward(x.data(), w.data(), dy.data(), dx.data(), dw.data(), db.data(), s.batch, s.in, s.out);
  if (with_dx) {
    EXPECT_TRUE(close(dxt, dx, dt == DType::kF32 ? fp32_tol(s.out) : bf16_tol(s.out), "dx"));
  }
  // dw and db are fp32 in both modes (bf16 inputs are exact in fp32), so fp32 tolerances over the batch.
  EXPECT_TRUE(close(dwt, dw, fp32_tol(s.batch), "dw"));
  if (with_db) {
    EXPECT_TRUE(close(dbt, db, fp32_tol(s.batch), "db"));
  }
}

TEST(Linear, ForwardFp32MatchesReference) {
  uint64_t seed = 1;
  for (const auto& s : kShapes)
    for (bool bias : {true, false}) run_forward(s, DType::kF32, bias, seed++);
}

TEST(Linear, ForwardBf16MatchesReference) {
  uint64_t seed = 100;
  for (const auto& s : kShapes)
    for (bool bias : {true, false}) run_forward(s, DType::kBF16, bias, seed++);
}

TEST(Linear, BackwardFp32MatchesReference) {
  uint64_t seed = 200;
  for (const auto& s : kShapes) run_backward(s, DType::kF32, true, true, seed++);
  run_backward({9, 11, 5}, DType::kF32, false, true, seed++);
  run_backward({9, 11, 5}, DType::kF32, true, false, seed++);
}

TEST(Linear, BackwardBf16MatchesReference) {
  uint64_t seed = 300;
  for (const auto& s : kShapes) run_backward(s, DType::kBF16, true, true, seed++);
}

TEST(Linear, SameResultWithOneAndTwoThreads) {
  const int before = num_threads();
  for (int threads : {1, 2}) {
    set_num_threads(threads);
    run_forward({65, 127, 33}, DType::kF32, true, 7);
    run_backward({65, 127, 33}, DType::kF32, true, true, 8);
  }
  set_num_threads(before);
}

TEST(Linear, ReferenceBackwardMatchesFiniteDifferences) {
  const int64_t batch = 3, in = 4, out = 5;
  Rng rng(42);
  auto x = to_double(rng.floats(batch * in)), w = to_double(rng.floats(out * in)), b = to_double(rng.floats(out)),
       r = to_double(rng.floats(batch * out));
  auto loss = [&](const std::vector<double>& xv, const std::vector<double>& wv, const std::vector<double>& bv) {
    std::vector<double> y(static_cast<size_t>(batch * out));
    ref::linear_forward(xv.data(), wv.data(), bv.data(), y.data(), batch, in, out);
    return dot(r, y);
  };
  std::vector<double> dx(x.size()), dw(w.size()), db(b.size());
  ref::linear_backward(x.data(), w.data(), r.data(), dx.data(), dw.data(), db.data(), batch, in, out);
  EXPECT_TRUE(close(dx, finite_diff([&](const auto& v) { return loss(v, w, b); }, x), kFdTol, "dx vs FD"));
  EXPECT_TRUE(close(dw, finite_diff([&](const auto& v) { return loss(x, v, b); }, w), kFdTol, "dw vs FD"));
  EXPECT_TRUE(close(db, finite_diff([&](const auto& v) { return loss(x, w, v); }, b), kFdTol, "db vs FD"));
}

TEST(Linear, RejectsBadShapesAndDtypes) {
  Tensor x = Tensor::zeros({4, 3}, DType::kF32), w = Tensor::zeros({5, 3}, DType::kF32),
         y = Tensor::zeros({4, 5}, DType::kF32);
  Tensor wrong_w = Tensor::zeros({5, 4}, DType::kF32), wrong_y = Tensor::zeros({4, 6}, DType::kF32);
  Tensor half_w = Tensor::zeros({5, 3}, DType::kBF16), b16 = Tensor::zeros({5}, DType::kBF16);
  EXPECT_THROW(linear_forward(x, wrong_w, nullptr, y), ShapeError);
  EXPECT_THROW(linear_forward(x, w, nullptr, wrong_y), ShapeError);
  EXPECT_THROW(linear_forward(x, half_w, nullptr, y), ShapeError);
  EXPECT_THROW(linear_forward(x, w, &b16, y), ShapeError);
  try {
    linear_forward(x, wrong_w, nullptr, y);
  } catch (const ShapeError& e) {
    EXPECT_NE(std::string(e.what()).find("linear_forward: w"), std::string::npos) << e.what();
  }
  Tensor dw = Tensor::zeros({5, 3}, DType::kF32), dy = Tensor::zeros({4, 6}, DType::kF32);
  EXPECT_THROW(linear_backward(x, w, dy, nullptr, dw, nullptr), ShapeError);
}

}  // namespace
}  // namespace rf::test
