// DCNv2 cross layer (full and low rank) against the double reference, including the accumulation
// into dx0, and the reference backward against finite differences.
#include <gtest/gtest.h>

#include "kernels/cross.h"
#include "kernels/ref/cross.h"
#include "tests/kernels/test_util.h"

namespace rf::test {
namespace {

// Two chained fp32 GEMMs over K = dim (and rank) terms of magnitude <= 1, then elementwise products:
// summation-order error of a few K * 2^-24 per GEMM.
Tol cross_tol(int64_t k) { return {4e-7 * static_cast<double>(k) + 1e-7, 2e-6}; }

struct Case {
  int64_t batch, dim, rank;  // rank 0: full rank
};
const Case kCases[] = {{1, 1, 0}, {1, 5, 2}, {7, 13, 0}, {7, 13, 4}, {64, 48, 0}, {64, 48, 1}, {33, 100, 17}};

struct Data {
  std::vector<double> x0, x, w, v, u, b, dy;
  Tensor x0t, xt, dyt;
  CrossWeights wt;
};

Data make_data(Rng& rng, const Case& c) {
  Data d;
  d.x0t = random_tensor(rng, {c.batch, c.dim}, DType::kF32, &d.x0);
  d.xt = random_tensor(rng, {c.batch, c.dim}, DType::kF32, &d.x);
  d.dyt = random_tensor(rng, {c.batch, c.dim}, DType::kF32, &d.dy);
  d.wt.b = random_tensor(rng, {c.dim}, DType::kF32, &d.b);
  if (c.rank > 0) {
    d.wt.v = random_tensor(rng, {c.rank, c.dim}, DType::kF32, &d.v);
    d.wt.u = random_tensor(rng, {c.dim, c.rank}, DType::kF32, &d.u);
  } else {
    d.wt.w = random_tensor(rng, {c.dim, c.dim}, DType::kF32, &d.w);
  }
  return d;
}

const double* ptr(const std::vector<double>& v) { return v.empty() ? nullptr : v.data(); }

TEST(Cross, ForwardAndBackwardMatchReference) {
  uint64_t seed = 1;
  for (const Case& c : kCases) {
    SCOPED_TRACE(::testing::Message() << "batch " << c.batch << " dim " << c.dim << " rank " << c.rank);
    Rng rng(seed++);
    Data d = make_data(rng, c);
    const Tol tol = cross_tol(c.dim + c.rank);

    Tensor y = Tensor::empty({c.batch, c.dim}, DType::kF32);
    poison(y);
    CrossSaved saved;
    cross_forward(d.x0t, d.xt, d.wt, y, saved);
    std::vector<double> ref_y(d.x.size());
    ref::cross_forward(d.x0.data(), d.x.data(), ptr(d.w), ptr(d.v), ptr(d.u), d.b.data(), c.batch, c.dim, c.rank,
                       ref_y.data());
    EXPECT_TRUE(close(y, ref_y, tol, "y"));

    // dx0 starts non-zero: the layer must add its share, not overwrite.
    std::vector<double> dx0_init;
    Tensor dx0 = random_tensor(rng, {c.batch, c.dim}, DType::kF32, &dx0_init);
    Tensor dx = Tensor::empty({c.batch, c.dim}, DType::kF32);
    poison(dx);
    CrossGrads grads;
    cross_backward(d.x0t, d.xt, d.wt, saved, d.dyt, dx0, dx, grads);

    std::vector<double> ref_dx0 = dx0_init, ref_dx(d.x.size()), ref_dw(d.w.size()), ref_dv(d.v.size()),
                        ref_du(d.u.size()), ref_db(d.b.size());
    ref::cross_backward(d.x0.data(), d.x.data(), ptr(d.w), ptr(d.v), ptr(d.u), d.b.data(), c.batch, c.dim, c.rank,
                        d.dy.data(), ref_dx0.data(), ref_dx.data(), ptr(ref_dw) ? ref_dw.data() : nullptr,
                        ptr(ref_dv) ? ref_dv.data() : nullptr, ptr(ref_du) ? ref_du.data() : nullptr, ref_db.data());
    EXPECT_TRUE(close(dx0, ref_dx0, tol, "dx0"));
    EXPECT_TRUE(close(dx, ref_dx, tol, "dx"));
    // Weight gradients sum over the batch: K = batch terms.
    const Tol wtol = cross_tol(c.batch + c.dim);
    EXPECT_TRUE(close(grads.b, ref_db, wtol, "db"));
    if (c.rank > 0) {
      EXPECT_FALSE(grads.w.defined());
      EXPECT_TRUE(close(grads.v, ref_dv, wtol, "dv"));
      EXPECT_TRUE(close(grads.u, ref_du, wtol, "du"));
    } else {
      EXPECT_TRUE(close(grads.w, ref_dw, wtol, "dw"));
    }
  }
}

TEST(Cross, ReferenceBackwardMatchesFiniteDifferences) {
  for (int64_t rank : {0, 2}) {
    SCOPED_TRACE(::testing::Message() << "rank " << rank);
    const int64_t batch = 3, dim = 4;
    Rng rng(21 + static_cast<uint64_t>(rank));
    auto x0 = to_double(rng.floats(batch * dim)), x = to_double(rng.floats(batch * dim)),
         b = to_double(rng.floats(dim)), r = to_double(rng.floats(batch * dim));
    std::vector<double> w, v, u;
    if (rank > 0) {
      v = to_double(rng.floats(rank * dim));
      u = to_double(rng.floats(dim * rank));
    } else {
      w = to_double(rng.floats(dim * dim));
    }
    auto loss = [&](const std::vector<double>& x0v, const std::vector<double>& xv, const std::vector<double>& wv,
                    const std::vector<double>& vv, const std::vector<double>& uv, const std::vector<double>& bv) {
      std::vector<double> y(static_cast<size_t>(batch * dim));
      ref::cross_forward(x0v.data(), xv.data(), ptr(wv), ptr(vv), ptr(uv), bv.data(), batch, dim, rank, y.data());
      return dot(r, y);
    };
    std::vector<double> dx0(x0.size(), 0.0), dx(x.size()), dw(w.size()), dv(v.size()), du(u.size()), db(b.size());
    ref::cross_backward(x0.data(), x.data(), ptr(w), ptr(v), ptr(u), b.data(), batch, dim, rank, r.data(), dx0.data(),
                        dx.data(), w.empty() ? nullptr : dw.data(), v.empty() ? nullptr : dv.data(),
                        u.empty() ? nullptr : du.data(), db.data());
    EXPECT_TRUE(close(dx0, finite_diff([&](const auto& p) { return loss(p, x, w, v, u, b); }, x0), kFdTol, "dx0 vs FD"));
    EXPECT_TRUE(close(dx, finite_diff([&](const auto& p) { return loss(x0, p, w, v, u, b); }, x), kFdTol, "dx vs FD"));
    EXPECT_TRUE(close(db, finite_diff([&](const auto& p) { return loss(x0, x, w, v, u, p); }, b), kFdTol, "db vs FD"));
    if (rank > 0) {
      EXPECT_TRUE(close(dv, finite_diff([&](const auto& p) { return loss(x0, x, w, p, u, b); }, v), kFdTol, "dv vs FD"));
      EXPECT_TRUE(close(du, finite_diff([&](const auto& p) { return loss(x0, x, w, v, p, b); }, u), kFdTol, "du vs FD"));
    } else {
      EXPECT_TRUE(close(dw, finite_diff([&](const auto& p) { return loss(x0, x, p, v, u, b); }, w), kFdTol, "dw vs FD"));
    }
  }
}

TEST(Cross, RejectsBadShapes) {
  CrossWeights wt;
  wt.w = Tensor::zeros({4, 4}, DType::kF32);
  wt.b = Tensor::zeros({5}, DType::kF32);
  Tensor x = Tensor::zeros({2, 4}, DType::kF32), y = Tensor::zeros({2, 4}, DType::kF32);
  CrossSaved saved;
  EXPECT_THROW(cross_forward(x, x, wt, y, saved), ShapeError);
}

}  // namespace
}  // namespace rf::test
