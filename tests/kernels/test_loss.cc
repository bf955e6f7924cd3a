// BCE with logits against the double reference (including large |logits|), its backward with a loss
// scale, and the reference gradient against finite differences of the reference loss.
#include <gtest/gtest.h>

#include <cmath>

#include "kernels/loss.h"
#include "kernels/ref/loss.h"
#include "tests/kernels/test_util.h"

namespace rf::test {
namespace {

// The forward sums in double from fp32 logits: only the fp32->double conversion and libm, ~1e-15.
constexpr Tol kLossTol{1e-12, 1e-12};
// The backward works in fp32: a few roundings of sigmoid and the scaled difference: 8 * 2^-24 relative,
// and an absolute term for sigmoid(z) - y cancelling near y.
Tol grad_tol(int64_t n, double scale) { return {2e-7 * scale / static_cast<double>(n), 5e-7}; }

TEST(Loss, MatchesReference) {
  uint64_t seed = 1;
  for (int64_t n : {1, 2, 7, 1000, 4097})
    for (double spread : {1.0, 30.0}) {
      SCOPED_TRACE(::testing::Message() << "n " << n << " spread " << spread);
      Rng rng(seed++);
      std::vector<double> z, y;
      Tensor zt = random_tensor(rng, {n}, DType::kF32, &z, -spread, spread);
      std::vector<float> labels(static_cast<size_t>(n));
      for (auto& l : labels) l = static_cast<float>(rng.integer(0, 1));
      labels[0] = 0.3f;  // soft labels are accepted
      Tensor yt = make(labels, {n});
      y = values(yt);
      const double loss = bce_with_logits_forward(zt, yt);
      EXPECT_NEAR(loss, ref::bce_with_logits_forward(z.data(), y.data(), n),
                  kLossTol.abs + kLossTol.rel * std::fabs(loss));
      for (float scale : {1.0f, 1024.0f}) {
        Tensor g = Tensor::empty({n}, DType::kF32);
        poison(g);
        bce_with_logits_backward(zt, yt, scale, g);
        std::vector<double> ref_g(static_cast<size_t>(n));
        ref::bce_with_logits_backward(z.data(), y.data(), n, static_cast<double>(scale), ref_g.data());
        EXPECT_TRUE(close(g, ref_g, grad_tol(n, scale), "grad"));
      }
    }
}

TEST(Loss, StableForHugeLogits) {
  Tensor z = Tensor::from_vector<float>({1000.f, -1000.f}, {2});
  Tensor y = Tensor::from_vector<float>({0.f, 1.f}, {2});
  EXPECT_NEAR(bce_with_logits_forward(z, y), 1000.0, 1e-9);
  Tensor g = Tensor::empty({2}, DType::kF32);
  bce_with_logits_backward(z, y, 1.0f, g);
  EXPECT_EQ(g.to_vector<float>(), (std::vector<float>{0.5f, -0.5f}));
}

TEST(Loss, ReferenceGradientMatchesFiniteDifferences) {
  const int64_t n = 9;
  Rng rng(3);
  auto z = to_double(rng.floats(n, -4, 4));
  std::vector<double> y(n);
  for (auto& v : y) v = static_cast<double>(rng.integer(0, 1));
  std::vector<double> g(n);
  ref::bce_with_logits_backward(z.data(), y.data(), n, 1.0, g.data());
  auto loss = [&](const std::vector<double>& zv) { return ref::bce_with_logits_forward(zv.data(), y.data(), n); };
  EXPECT_TRUE(close(g, finite_diff(loss, z), kFdTol, "grad vs FD"));
}

TEST(Loss, RejectsBadShapes) {
  Tensor z = Tensor::zeros({4}, DType::kF32), y = Tensor::zeros({5}, DType::kF32);
  EXPECT_THROW(bce_with_logits_forward(z, y), ShapeError);
  EXPECT_THROW(bce_with_logits_forward(Tensor::zeros({0}, DType::kF32), Tensor::zeros({0}, DType::kF32)), ShapeError);
}

}  // namespace
}  // namespace rf::test
