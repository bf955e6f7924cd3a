// Optimizers against double-precision reference loops over several steps on random tensors, the
// sparse optimizers' untouched rows bit for bit, the parameter groups, the factory and the LR schedule.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <random>

#include "src/optim/optimizer.h"
#include "src/optim/schedule.h"

namespace rf {
namespace {

// fp32 update vs double reference after a handful of steps: each step rounds a few ops at 2^-24
// relative, and Adam's division by sqrt(v) + eps can amplify that for tiny v; 1e-5 relative covers it.
constexpr double kAbs = 1e-6, kRel = 1e-5;

std::vector<float> randn(size_t n, std::mt19937& rng, float scale = 1.0f) {
  std::normal_distribution<float> d(0.0f, scale);
  std::vector<float> v(n);
  for (auto& x : v) x = d(rng);
  return v;
}

Parameter dense_param(const std::string& name, const Shape& shape, std::mt19937& rng) {
  Parameter p;
  p.name = name;
  p.value = Tensor::from_vector(randn(static_cast<size_t>(shape_numel(shape)), rng), shape);
  p.grad = Tensor::zeros(shape, DType::kF32);
  return p;
}

void expect_close(const std::vector<double>& ref, const Tensor& got, const char* what) {
  auto g = got.to_vector<float>();
  ASSERT_EQ(ref.size(), g.size());
  for (size_t i = 0; i < g.size(); ++i)
    ASSERT_NEAR(g[i], ref[i], kAbs + kRel * std::fabs(ref[i])) << what << " element " << i;
}

enum class Kind { kSgd, kAdagrad, kAdam, kAdamW };

// Double-precision torch.optim formulas.
struct Reference {
  Kind kind;
  double wd, eps, b1, b2, init_acc, lr_decay;
  std::vector<double> w, s1, s2;
  void step(const std::vector<float>& g_in, int64_t step, double lr) {
    const double t = static_cast<double>(step + 1);
    if (s1.empty()) {
      s1.assign(w.size(), kind == Kind::kAdagrad ? init_acc : 0.0);
      s2.assign(w.size(), 0.0);
    }
    for (size_t i = 0; i < w.size(); ++i) {
      double g = g_in[i];
      switch (kind) {
        case Kind::kSgd: w[i] -= lr * (g + wd * w[i]); break;
        case Kind::kAdagrad: {
          g += wd * w[i];
          double clr = lr / (1.0 + (t - 1.0) * lr_decay);
          s1[i] += g * g;
          w[i] -= clr * g / (std::sqrt(s1[i]) + eps);
          break;
        }
        case Kind::kAdam:
        case Kind::kAdamW: {
          if (kind == Kind::kAdam) g += wd * w[i];
          else w[i] *= 1.0 - lr * wd;
          s1[i] = b1 * s1[i] + (1.0 - b1) * g;
          s2[i] = b2 * s2[i] + (1.0 - b2) * g * g;
          double denom = std::sqrt(s2[i]) / std::sqrt(1.0 - std::pow(b2, t)) + eps;
          w[i] -= lr / (1.0 - std::pow(b1, t)) * s1[i] / denom;
          break;
        }
      }
    }
  }
};

struct DenseCase {
  const char* name;
  Kind kind;
  double wd, eps, init_acc, lr_decay;
};

class DenseOptimizerTest : public ::testing::TestWithParam<DenseCase> {};

TEST_P(DenseOptimizerTest, MatchesDoubleReference) {
  const DenseCase c = GetParam();
  OptimizerHyperparams hp;
  hp.weight_decay = c.wd;
  hp.eps = c.eps;
  hp.initial_accumulator = c.init_acc;
  hp.lr_decay = c.lr_decay;
  const char* names[] = {"sgd", "adagrad", "adam", "adamw"};
  auto opt = make_dense_optimizer(names[static_cast<int>(c.kind)], hp);
  std::mt19937 rng(42);
  // A small parameter and one big enough for the OpenMP path.
  Parameter a = dense_param("a.weight", {13, 7}, rng);
  Parameter b = dense_param("b.weight", {300, 130}, rng);
  ParameterList params = {&a, &b};
  std::vector<Reference> refs;
  for (Parameter* p : params) {
    Reference r{c.kind, c.wd, c.eps, 0.9, 0.999, c.init_acc, c.lr_decay, {}, {}, {}};
    for (float x : p->value.to_vector<float>()) r.w.push_back(x);
    refs.push_back(r);
  }
  const float lrs[] = {0.01f, 0.02f, 0.005f, 0.01f, 0.03f, 0.01f};
  for (int64_t s = 0; s < 6; ++s) {
    for (size_t k = 0; k < params.size(); ++k) {
      auto g = randn(static_cast<size_t>(params[k]->grad.numel()), rng, 0.5f);
      std::memcpy(params[k]->grad.data<float>(), g.data(), g.size() * sizeof(float));
      refs[k].step(g, s, lrs[s]);
    }
    opt->step(params, s, lrs[s]);
  }
  expect_close(refs[0].w, a.value, c.name);
  expect_close(refs[1].w, b.value, c.name);
}

INSTANTIATE_TEST_SUITE_P(
    All, DenseOptimizerTest,
    ::testing::Values(DenseCase{"sgd", Kind::kSgd, 0.0, -1, 0, 0}, DenseCase{"sgd_wd", Kind::kSgd, 0.1, -1, 0, 0},
                      DenseCase{"adagrad", Kind::kAdagrad, 0.0, 1e-10, 0, 0},
                      DenseCase{"adagrad_all", Kind::kAdagrad, 0.05, 1e-6, 0.1, 0.01},
                      DenseCase{"adam", Kind::kAdam, 0.0, 1e-8, 0, 0}, DenseCase{"adam_l2", Kind::kAdam, 0.1, 1e-8, 0, 0},
                      DenseCase{"adamw", Kind::kAdamW, 0.0, 1e-8, 0, 0},
                      DenseCase{"adamw_wd", Kind::kAdamW, 0.1, 1e-8, 0, 0}),
    [](const auto& info) { return std::string(info.param.name); });

TEST(DenseOptimizer, StateIsNamedAndPersistent) {
  std::mt19937 rng(1);
  Parameter a = dense_param("top.0.weight", {4, 3}, rng);
  OptimizerHyperparams hp;
  auto adam = make_dense_optimizer("adam", hp);
  adam->init_state({&a});
  auto st = adam->state();
  ASSERT_EQ(st.size(), 2u);
  EXPECT_EQ(st[0].first, "exp_avg/top.0.weight");
  EXPECT_EQ(st[1].first, "exp_avg_sq/top.0.weight");
  // A state loaded before the first step is what the step continues from.
  st[0].second->data<float>()[0] = 1.0f;
  a.grad.fill_zero();
  adam->step({&a}, 0, 0.1f);
  EXPECT_FLOAT_EQ(adam->state()[0].second->data<float>()[0], 0.9f);
}

TEST(DenseOptimizer, RefusesSparseParameter) {
  std::mt19937 rng(1);
  Parameter t = dense_param("emb.0.weight", {4, 3}, rng);
  t.sparse = true;
  OptimizerHyperparams hp;
  EXPECT_THROW(make_dense_optimizer("sgd", hp)->step({&t}, 0, 0.1f), Error);
}

// ---- sparse -------------------------------------------------------------------------------------

struct SparseSetup {
  Parameter table;
  std::vector<float> before;
};

SparseSetup make_table(int64_t rows, int64_t dim, std::mt19937& rng) {
  SparseSetup s;
  s.table.name = "embeddings.0.weight";
  s.table.sparse = true;
  s.table.value = Tensor::from_vector(randn(static_cast<size_t>(rows * dim), rng), {rows, dim});
  s.before = s.table.value.to_vector<float>();
  return s;
}

void set_sparse_grad(Parameter& p, const std::vector<int64_t>& rows, std::mt19937& rng) {
  const int64_t dim = p.value.size(1);
  p.sparse_grad.rows = Tensor::from_vector(rows, {static_cast<int64_t>(rows.size())});
  p.sparse_grad.values =
      Tensor::from_vector(randn(rows.size() * static_cast<size_t>(dim), rng), {static_cast<int64_t>(rows.size()), dim});
}

std::vector<int64_t> random_rows(int64_t rows, int64_t count, std::mt19937& rng) {
  std::vector<int64_t> all(static_cast<size_t>(rows));
  for (int64_t i = 0; i < rows; ++i) all[static_cast<size_t>(i)] = i;
  std::shuffle(all.begin(), all.end(), rng);
  all.resize(static_cast<size_t>(count));
  std::sort(all.begin(), all.end());
  return all;
}

TEST(SparseSgd, UpdatesTouchedRowsOnly) {
  std::mt19937 rng(3);
  const int64_t rows = 1000, dim = 16;
  SparseSetup s = make_table(rows, dim, rng);
  std::vector<int64_t> touched = random_rows(rows, 300, rng);  // >= 256 rows: the OpenMP path
  set_sparse_grad(s.table, touched, rng);
  auto g = s.table.sparse_grad.values.to_vector<float>();
  make_sparse_optimizer("sgd", {})->step({&s.table}, 0, 0.5f);
  auto after = s.table.value.to_vector<float>();
  std::vector<bool> hit(static_cast<size_t>(rows), false);
  for (size_t k = 0; k < touched.size(); ++k) {
    hit[static_cast<size_t>(touched[k])] = true;
    for (int64_t d = 0; d < dim; ++d) {
      size_t i = static_cast<size_t>(touched[k] * dim + d);
      EXPECT_EQ(after[i], s.before[i] - 0.5f * g[k * dim + d]);
    }
  }
  for (int64_t r = 0; r < rows; ++r) {
    if (hit[static_cast<size_t>(r)]) continue;
    ASSERT_EQ(0, std::memcmp(&after[static_cast<size_t>(r * dim)], &s.before[static_cast<size_t>(r * dim)], dim * 4))
        << "row " << r;
  }
}

void rowwise_case(double wd) {
  std::mt19937 rng(5);
  const int64_t rows = 500, dim = 24;
  SparseSetup s = make_table(rows, dim, rng);
  OptimizerHyperparams hp;
  hp.initial_accumulator = 0.01;
  hp.sparse_weight_decay = wd;
  auto opt = make_sparse_optimizer("rowwise_adagrad", hp);
  std::vector<double> w(s.before.begin(), s.before.end());
  std::vector<double> acc(static_cast<size_t>(rows), 0.01);
  std::vector<int> hits(static_cast<size_t>(rows), 0);
  const double eps = 1e-8;
  for (int64_t step = 0; step < 5; ++step) {
    std::vector<int64_t> touched = random_rows(rows, step % 2 ? 40 : 280, rng);
    set_sparse_grad(s.table, touched, rng);
    auto g = s.table.sparse_grad.values.to_vector<float>();
    const double lr = 0.05 * (step + 1);
    for (size_t k = 0; k < touched.size(); ++k) {
      const size_t r = static_cast<size_t>(touched[k]);
      ++hits[r];
      double sq = 0.0;
      std::vector<double> gg(static_cast<size_t>(dim));
      for (int64_t d = 0; d < dim; ++d) {
        gg[d] = g[k * dim + d] + wd * w[r * dim + d];
        sq += gg[d] * gg[d];
      }
      acc[r] += sq / dim;
      const double m = lr / (std::sqrt(acc[r]) + eps);
      for (int64_t d = 0; d < dim; ++d) w[r * dim + d] -= m * gg[d];
    }
    opt->step({&s.table}, step, static_cast<float>(lr));
  }
  auto after = s.table.value.to_vector<float>();
  auto st = opt->state();
  ASSERT_EQ(st.size(), 1u);
  EXPECT_EQ(st[0].first, "momentum1/embeddings.0.weight");
  const float* got_acc = st[0].second->data<float>();
  for (int64_t r = 0; r < rows; ++r) {
    const size_t ru = static_cast<size_t>(r);
    if (hits[ru] == 0) {
      ASSERT_EQ(0, std::memcmp(&after[ru * dim], &s.before[ru * dim], dim * 4)) << "untouched row " << r << " changed";
      ASSERT_EQ(got_acc[r], 0.01f);
      continue;
    }
    ASSERT_NEAR(got_acc[r], acc[ru], kAbs + kRel * acc[ru]) << "row " << r;
    for (int64_t d = 0; d < dim; ++d)
      ASSERT_NEAR(after[ru * dim + d], w[ru * dim + d], kAbs + kRel * std::fabs(w[ru * dim + d])) << "row " << r;
  }
}

TEST(RowwiseAdagrad, MatchesReferenceAndLeavesOtherRows) { rowwise_case(0.0); }
TEST(RowwiseAdagrad, L2WeightDecayOnTouchedRows) { rowwise_case(0.01); }

// Column shards: a table split into column pieces of 10 and 14, each given the full-row sums of g*g,
// g*w and w*w (what ShardedEmbeddingCollection exchanges), moves as the whole table does: same
// accumulators, same weights. Tolerance: the shards add each row's squares in two parts (fp32
// rounding order, ~1e-7 relative per step).
void column_shard_case(double wd) {
  std::mt19937 rng(21);
  const int64_t rows = 300, dim = 24, split = 10;
  SparseSetup whole = make_table(rows, dim, rng);
  OptimizerHyperparams hp;
  hp.initial_accumulator = 0.01;
  hp.sparse_weight_decay = wd;
  Parameter piece[2];
  const int64_t c0[2] = {0, split}, nc[2] = {split, dim - split};
  for (int k = 0; k < 2; ++k) {
    piece[k].name = "embeddings.0.weight";
    piece[k].sparse = true;
    piece[k].sharding = Sharding::kColumnSharded;
    piece[k].col_begin = c0[k];
    piece[k].full_rows = rows;
    piece[k].full_cols = dim;
    std::vector<float> v;
    for (int64_t r = 0; r < rows; ++r)
      for (int64_t c = 0; c < nc[k]; ++c) v.push_back(whole.before[static_cast<size_t>(r * dim + c0[k] + c)]);
    piece[k].value = Tensor::from_vector(v, {rows, nc[k]});
  }
  auto opt_whole = make_sparse_optimizer("rowwise_adagrad", hp);
  std::unique_ptr<Optimizer> opt_piece[2] = {make_sparse_optimizer("rowwise_adagrad", hp),
                                             make_sparse_optimizer("rowwise_adagrad", hp)};
  for (int64_t step = 0; step < 6; ++step) {
    std::vector<int64_t> touched = random_rows(rows, step % 2 ? 30 : 270, rng);
    set_sparse_grad(whole.table, touched, rng);
    const int64_t u = static_cast<int64_t>(touched.size());
    const float* g = whole.table.sparse_grad.values.data<float>();
    std::vector<float> sums(static_cast<size_t>(3 * u), 0.0f);
    for (int k = 0; k < 2; ++k) {
      std::vector<float> gv;
      for (int64_t i = 0; i < u; ++i)
        for (int64_t c = 0; c < nc[k]; ++c) gv.push_back(g[i * dim + c0[k] + c]);
      piece[k].sparse_grad.rows = whole.table.sparse_grad.rows;
      piece[k].sparse_grad.values = Tensor::from_vector(gv, {u, nc[k]});
      const float* w = piece[k].value.data<float>();
      for (int64_t i = 0; i < u; ++i)
        for (int64_t c = 0; c < nc[k]; ++c) {
          const float gc = gv[static_cast<size_t>(i * nc[k] + c)], wc = w[touched[static_cast<size_t>(i)] * nc[k] + c];
          sums[static_cast<size_t>(3 * i)] += gc * gc;
          sums[static_cast<size_t>(3 * i + 1)] += gc * wc;
          sums[static_cast<size_t>(3 * i + 2)] += wc * wc;
        }
    }
    for (int k = 0; k < 2; ++k) piece[k].full_row_sums = Tensor::from_vector(sums, {u, 3});
    const float lr = 0.05f * static_cast<float>(step + 1);
    opt_whole->step({&whole.table}, step, lr);
    for (int k = 0; k < 2; ++k) opt_piece[k]->step({&piece[k]}, step, lr);
  }
  const float* want_acc = opt_whole->state()[0].second->data<float>();
  const float* want_w = whole.table.value.data<float>();
  for (int k = 0; k < 2; ++k) {
    const float* acc = opt_piece[k]->state()[0].second->data<float>();
    const float* w = piece[k].value.data<float>();
    for (int64_t r = 0; r < rows; ++r) {
      ASSERT_NEAR(acc[r], want_acc[r], kAbs + kRel * want_acc[r]) << "piece " << k << " row " << r;
      for (int64_t c = 0; c < nc[k]; ++c) {
        const float want = want_w[r * dim + c0[k] + c];
        ASSERT_NEAR(w[r * nc[k] + c], want, kAbs + kRel * std::fabs(want)) << "piece " << k << " [" << r << ", " << c << "]";
      }
    }
  }
}

TEST(RowwiseAdagrad, ColumnShardsWithFullRowSumsMoveAsTheWholeTable) { column_shard_case(0.0); }
TEST(RowwiseAdagrad, ColumnShardsWithFullRowSumsAndWeightDecay) { column_shard_case(0.01); }

TEST(RowwiseAdagrad, NoLookupsIsANoOp) {
  std::mt19937 rng(9);
  SparseSetup s = make_table(10, 4, rng);
  make_sparse_optimizer("rowwise_adagrad", {})->step({&s.table}, 0, 0.1f);
  EXPECT_EQ(s.table.value.to_vector<float>(), s.before);
}

TEST(RowwiseAdagrad, RowOutOfRangeThrows) {
  std::mt19937 rng(9);
  SparseSetup s = make_table(10, 4, rng);
  set_sparse_grad(s.table, {3, 10}, rng);
  EXPECT_THROW(make_sparse_optimizer("rowwise_adagrad", {})->step({&s.table}, 0, 0.1f), Error);
}

// ---- groups, factory ----------------------------------------------------------------------------

TEST(ParamGroupOptimizer, RoutesByKindWithGroupLrs) {
  std::mt19937 rng(11);
  Parameter d = dense_param("mlp.weight", {3, 2}, rng);
  SparseSetup s = make_table(8, 2, rng);
  OptimizerHyperparams hp;
  hp.dense_lr = 0.1;
  hp.sparse_lr = 1.0;
  auto group = make_optimizers("sgd", "sgd", hp);
  auto dw = d.value.to_vector<float>();
  for (int64_t i = 0; i < d.grad.numel(); ++i) d.grad.data<float>()[i] = 1.0f;
  s.table.sparse_grad.rows = Tensor::from_vector<int64_t>({2}, {1});
  s.table.sparse_grad.values = Tensor::from_vector<float>({1.0f, 1.0f}, {1, 2});
  group->step({&d, &s.table}, 0, 0.5);  // lr scale 0.5: dense 0.05, sparse 0.5
  EXPECT_FLOAT_EQ(d.value.data<float>()[0], dw[0] - 0.05f);
  EXPECT_FLOAT_EQ(s.table.value.data<float>()[4], s.before[4] - 0.5f);
  EXPECT_EQ(s.table.value.data<float>()[0], s.before[0]);
}

TEST(ParamGroupOptimizer, StatePrefixes) {
  std::mt19937 rng(11);
  Parameter d = dense_param("mlp.weight", {3, 2}, rng);
  SparseSetup s = make_table(8, 2, rng);
  auto group = make_optimizers("adagrad", "rowwise_adagrad", {});
  group->init_state({&d, &s.table});
  auto st = group->state();
  ASSERT_EQ(st.size(), 2u);
  EXPECT_EQ(st[0].first, "dense.sum/mlp.weight");
  EXPECT_EQ(st[1].first, "sparse.momentum1/embeddings.0.weight");
  EXPECT_EQ(st[1].second->shape(), (Shape{8}));
}

TEST(Factory, UnknownNamesAreConfigErrors) {
  EXPECT_THROW(make_optimizers("lamb", "sgd", {}), ConfigError);
  EXPECT_THROW(make_optimizers("adam", "adam", {}), ConfigError);
  EXPECT_STREQ(make_optimizers("adamw", "exact_rowwise_adagrad", {})->dense().name(), "adamw");
}

// ---- schedule -----------------------------------------------------------------------------------

TEST(LrSchedule, WarmupThenPoly2LikeDlrm) {
  LrSchedule s;
  s.warmup_steps = 4;
  s.decay = LrDecay::kPoly2;
  s.decay_start = 10;
  s.decay_steps = 5;
  s.validate();
  EXPECT_DOUBLE_EQ(s.scale(0), 0.25);
  EXPECT_DOUBLE_EQ(s.scale(3), 1.0);
  EXPECT_DOUBLE_EQ(s.scale(9), 1.0);
  EXPECT_DOUBLE_EQ(s.scale(10), 1.0);
  EXPECT_DOUBLE_EQ(s.scale(11), 0.64);
  EXPECT_DOUBLE_EQ(s.scale(14), 0.04);
  EXPECT_DOUBLE_EQ(s.scale(15), 0.0);
  EXPECT_DOUBLE_EQ(s.scale(100), 0.0);
  EXPECT_DOUBLE_EQ(s.lr(2.0, 1), 1.0);
}

TEST(LrSchedule, LinearCosineStepAndFloor) {
  LrSchedule s;
  s.decay_start = 2;
  s.decay_steps = 4;
  s.decay = LrDecay::kLinear;
  EXPECT_DOUBLE_EQ(s.scale(3), 0.75);
  s.decay = LrDecay::kCosine;
  EXPECT_NEAR(s.scale(4), 0.5, 1e-15);
  EXPECT_DOUBLE_EQ(s.scale(6), 0.0);
  s.min_scale = 0.01;
  EXPECT_DOUBLE_EQ(s.scale(6), 0.01);
  s.min_scale = 0.0;
  s.decay = LrDecay::kStep;
  s.step_gamma = 0.5;
  EXPECT_DOUBLE_EQ(s.scale(5), 1.0);
  EXPECT_DOUBLE_EQ(s.scale(6), 0.5);
  EXPECT_DOUBLE_EQ(s.scale(13), 0.25);
  s.decay = LrDecay::kNone;
  EXPECT_DOUBLE_EQ(s.scale(1000), 1.0);
}

TEST(LrSchedule, ParseAndValidate) {
  EXPECT_EQ(parse_lr_decay("poly2"), LrDecay::kPoly2);
  EXPECT_THROW(parse_lr_decay("exp"), ConfigError);
  LrSchedule s;
  s.decay = LrDecay::kLinear;
  EXPECT_THROW(s.validate(), ConfigError);
}

}  // namespace
}  // namespace rf
