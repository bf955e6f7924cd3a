// ReLU and sigmoid, fp32 and bf16, against the double reference; in-place calls; the reference
// backward against central finite differences.
#include <gtest/gtest.h>

#include "kernels/activation.h"
#include "kernels/ref/activation.h"
#include "tests/kernels/test_util.h"

namespace rf::test {
namespace {

// fp32 elementwise: one rounding of the result plus fp32 exp (a few ulp): 4 * 2^-24 relative.
constexpr Tol kFp32Tol{1e-7, 2.5e-7};
// bf16 outputs: one rounding to an 8-bit mantissa (half-ulp 2^-9 relative) after fp32 math; the
// sigmoid backward product y (1 - y) of bf16 values can cancel, so a small absolute term too.
constexpr Tol kBf16Tol{1e-6, 1.0 / 256};

const int64_t kSizes[] = {1, 7, 64, 1000, 4099};

enum class Op { kRelu, kSigmoid };

void run(Op op, DType dt, int64_t n, bool in_place, uint64_t seed) {
  SCOPED_TRACE(::testing::Message() << (op == Op::kRelu ? "relu " : "sigmoid ") << dtype_name(dt) << " n " << n
                                    << (in_place ? " in place" : ""));
  Rng rng(seed);
  std::vector<float> xf(static_cast<size_t>(n));
  for (auto& v : xf) v = static_cast<float>(rng.away_from_zero(1e-3, 4.0));  // no ReLU kink at 0
  Tensor x = make(xf, {n}, dt);
  std::vector<double> xd = values(x), dyd;
  Tensor dy = random_tensor(rng, {n}, dt, &dyd);
  const Tol tol = dt == DType::kF32 ? kFp32Tol : kBf16Tol;

  std::vector<double> y(static_cast<size_t>(n)), dx(static_cast<size_t>(n));
  Tensor yt = in_place ? x : Tensor::empty({n}, dt);
  if (op == Op::kRelu) {
    ref::relu_forward(xd.data(), y.data(), n);
    relu_forward(x, yt);
  } else {
    ref::sigmoid_forward(xd.data(), y.data(), n);
    sigmoid_forward(x, yt);
  }
  EXPECT_TRUE(close(yt, y, tol, "y"));

  // Backward from the fast forward's own output (what a layer would save), so both sides see the same y.
  std::vector<double> yfast = values(yt);
  Tensor dxt = in_place ? dy : Tensor::empty({n}, dt);
  if (op == Op::kRelu) {
    ref::relu_backward(yfast.data(), dyd.data(), dx.data(), n);
    relu_backward(yt, dy, dxt);
  } else {
    ref::sigmoid_backward(yfast.data(), dyd.data(), dx.data(), n);
    sigmoid_backward(yt, dy, dxt);
  }
  EXPECT_TRUE(close(dxt, dx, tol, "dx"));
}

TEST(Activation, MatchesReference) {
  uint64_t seed = 1;
  for (Op op : {Op::kRelu, Op::kSigmoid})
    for (DType dt : {DType::kF32, DType::kBF16})
      for (int64_t n : kSizes)
        for (bool in_place : {false, true}) run(op, dt, n, in_place, seed++);
}

TEST(Activation, MultiDimensionalShapes) {
  Rng rng(5);
  std::vector<double> x;
  Tensor xt = random_tensor(rng, {3, 5, 7}, DType::kF32, &x);
  Tensor yt = Tensor::empty({3, 5, 7}, DType::kF32);
  std::vector<double> y(x.size());
  sigmoid_forward(xt, yt);
  ref::sigmoid_forward(x.data(), y.data(), static_cast<int64_t>(x.size()));
  EXPECT_TRUE(close(yt, y, kFp32Tol, "y"));
}

TEST(Activation, ReferenceBackwardMatchesFiniteDifferences) {
  const int64_t n = 16;
  Rng rng(9);
  std::vector<double> x(n), r = to_double(rng.floats(n));
  for (auto& v : x) v = rng.away_from_zero(0.05, 3.0);
  for (Op op : {Op::kRelu, Op::kSigmoid}) {
    auto fwd = [&](const std::vector<double>& xv, std::vector<double>& yv) {
      if (op == Op::kRelu) ref::relu_forward(xv.data(), yv.data(), n);
      else ref::sigmoid_forward(xv.data(), yv.data(), n);
    };
    std::vector<double> y(n), dx(n);
    fwd(x, y);
    if (op == Op::kRelu) ref::relu_backward(y.data(), r.data(), dx.data(), n);
    else ref::sigmoid_backward(y.data(), r.data(), dx.data(), n);
    auto loss = [&](const std::vector<double>& xv) {
      std::vector<double> yv(n);
      fwd(xv, yv);
      return dot(r, yv);
    };
    EXPECT_TRUE(close(dx, finite_diff(loss, x), kFdTol, op == Op::kRelu ? "relu dx vs FD" : "sigmoid dx vs FD"));
  }
}

TEST(Activation, SigmoidIsStableForLargeInputs) {
  Tensor x = Tensor::from_vector<float>({-200.f, -90.f, 90.f, 200.f}, {4});
  Tensor y = Tensor::empty({4}, DType::kF32);
  sigmoid_forward(x, y);
  auto v = y.to_vector<float>();
  EXPECT_EQ(v[0], 0.0f);
  EXPECT_GE(v[1], 0.0f);
  EXPECT_EQ(v[2], 1.0f);
  EXPECT_EQ(v[3], 1.0f);
}

TEST(Activation, RejectsMismatchedTensors) {
  Tensor x = Tensor::zeros({4}, DType::kF32), y = Tensor::zeros({5}, DType::kF32), yb = Tensor::zeros({4}, DType::kBF16);
  Tensor xi = Tensor::zeros({4}, DType::kI32);
  EXPECT_THROW(relu_forward(x, y), ShapeError);
  EXPECT_THROW(relu_forward(x, yb), ShapeError);
  EXPECT_THROW(sigmoid_forward(xi, xi), ShapeError);
}

}  // namespace
}  // namespace rf::test
