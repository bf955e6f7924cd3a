// DLRM dot interaction against the double reference (with and without self-interaction), the pair
// ordering of the DLRM reference on a hand-computed case, and the reference backward against finite
// differences.
#include <gtest/gtest.h>

#include "kernels/interaction.h"
#include "kernels/ref/interaction.h"
#include "tests/kernels/test_util.h"

namespace rf::test {
namespace {

// Dot products of length dim in fp32 (entries <= 1): summation-order error of a few dim * 2^-24.
Tol dot_tol(int64_t dim) { return {2e-7 * static_cast<double>(dim) + 1e-7, 1e-6}; }
// Each gradient vector sums F terms g_ij Z_j, each a dim-free product: error a few F * 2^-24.
Tol grad_tol(int64_t f) { return {2e-7 * static_cast<double>(f) + 1e-7, 1e-6}; }

struct Case {
  int64_t batch, tables, dim;
};
const Case kCases[] = {{1, 1, 1}, {1, 26, 16}, {5, 3, 7}, {64, 26, 16}, {17, 8, 33}, {3, 0, 4}};

TEST(Interaction, OutputDim) {
  EXPECT_EQ(interaction_output_dim(26, 16, false), 16 + 27 * 26 / 2);  // 367: DLRM Kaggle top MLP input
  EXPECT_EQ(interaction_output_dim(26, 16, true), 16 + 27 * 28 / 2);
  EXPECT_EQ(interaction_output_dim(0, 4, false), 4);
}

TEST(Interaction, PairOrderFollowsDlrmReference) {
  // Z = [d, e0, e1] with dim 1: out = [d, e0*d, e1*d, e1*e0] (i outer, j < i inner).
  Tensor dense = Tensor::from_vector<float>({2}, {1, 1});
  Tensor emb = Tensor::from_vector<float>({3, 5}, {1, 2, 1});
  Tensor out = Tensor::empty({1, 4}, DType::kF32);
  interaction_forward(dense, emb, false, out);
  EXPECT_EQ(out.to_vector<float>(), (std::vector<float>{2, 6, 10, 15}));
  // With self-interaction: [d, d*d, e0*d, e0*e0, e1*d, e1*e0, e1*e1].
  Tensor out_self = Tensor::empty({1, 7}, DType::kF32);
  interaction_forward(dense, emb, true, out_self);
  EXPECT_EQ(out_self.to_vector<float>(), (std::vector<float>{2, 4, 6, 9, 10, 15, 25}));
}

TEST(Interaction, ForwardAndBackwardMatchReference) {
  uint64_t seed = 1;
  for (const Case& c : kCases)
    for (bool self : {false, true}) {
      SCOPED_TRACE(::testing::Message() << "batch " << c.batch << " tables " << c.tables << " dim " << c.dim
                                        << (self ? " self" : ""));
      Rng rng(seed++);
      const int64_t out_dim = interaction_output_dim(c.tables, c.dim, self);
      std::vector<double> dense, emb, g;
      Tensor dt = random_tensor(rng, {c.batch, c.dim}, DType::kF32, &dense);
      Tensor et = random_tensor(rng, {c.batch, c.tables, c.dim}, DType::kF32, &emb);
      Tensor gt = random_tensor(rng, {c.batch, out_dim}, DType::kF32, &g);
      Tensor out = Tensor::empty({c.batch, out_dim}, DType::kF32);
      poison(out);
      interaction_forward(dt, et, self, out);
      std::vector<double> ref_out(static_cast<size_t>(c.batch * out_dim));
      ref::interaction_forward(dense.data(), emb.data(), c.batch, c.tables, c.dim, self, ref_out.data());
      EXPECT_TRUE(close(out, ref_out, dot_tol(c.dim), "out"));

      Tensor gd = Tensor::empty({c.batch, c.dim}, DType::kF32), ge = Tensor::empty({c.batch, c.tables, c.dim}, DType::kF32);
      poison(gd);
      poison(ge);
      interaction_backward(dt, et, gt, self, gd, ge);
      std::vector<double> ref_gd(dense.size()), ref_ge(emb.size());
      ref::interaction_backward(dense.data(), emb.data(), g.data(), c.batch, c.tables, c.dim, self, ref_gd.data(),
                                ref_ge.data());
      EXPECT_TRUE(close(gd, ref_gd, grad_tol(c.tables + 2), "grad_dense"));
      EXPECT_TRUE(close(ge, ref_ge, grad_tol(c.tables + 2), "grad_emb"));
    }
}

TEST(Interaction, ReferenceBackwardMatchesFiniteDifferences) {
  const int64_t batch = 2, tables = 3, dim = 4;
  Rng rng(11);
  auto dense = to_double(rng.floats(batch * dim)), emb = to_double(rng.floats(batch * tables * dim));
  for (bool self : {false, true}) {
    const int64_t out_dim = interaction_output_dim(tables, dim, self);
    auto r = to_double(rng.floats(batch * out_dim));
    auto loss = [&](const std::vector<double>& d, const std::vector<double>& e) {
      std::vector<double> out(static_cast<size_t>(batch * out_dim));
      ref::interaction_forward(d.data(), e.data(), batch, tables, dim, self, out.data());
      return dot(r, out);
    };
    std::vector<double> gd(dense.size()), ge(emb.size());
    ref::interaction_backward(dense.data(), emb.data(), r.data(), batch, tables, dim, self, gd.data(), ge.data());
    EXPECT_TRUE(close(gd, finite_diff([&](const auto& v) { return loss(v, emb); }, dense), kFdTol, "grad_dense vs FD"));
    EXPECT_TRUE(close(ge, finite_diff([&](const auto& v) { return loss(dense, v); }, emb), kFdTol, "grad_emb vs FD"));
  }
}

TEST(Interaction, RejectsBadShapes) {
  Tensor dense = Tensor::zeros({4, 8}, DType::kF32), emb = Tensor::zeros({4, 3, 7}, DType::kF32);
  Tensor out = Tensor::zeros({4, interaction_output_dim(3, 8, false)}, DType::kF32);
  EXPECT_THROW(interaction_forward(dense, emb, false, out), ShapeError);
  Tensor emb_ok = Tensor::zeros({4, 3, 8}, DType::kF32);
  EXPECT_THROW(interaction_forward(dense, emb_ok, true, out), ShapeError);  // out sized for no self
}

}  // namespace
}  // namespace rf::test
