// Embedding bags: forward over fp32/fp16/bf16 tables and sum/mean pooling, and the sparse backward
// (unique ascending rows) against the dense double reference; empty bags, repeated indices, batch 1;
// the reference backward against finite differences; DataError/ShapeError messages.
#include <gtest/gtest.h>

#include <algorithm>
#include <functional>

#include "kernels/embedding_bag.h"
#include "kernels/ref/embedding_bag.h"
#include "tests/kernels/test_util.h"

namespace rf::test {
namespace {

// fp32 accumulation of L rows with entries <= 1 (table values are exact in fp32 whatever their
// storage type): summation-order error of a few L * 2^-24, plus one fp32 rounding of a mean.
Tol pool_tol(int64_t max_bag) { return {2e-7 * static_cast<double>(max_bag + 1), 2.5e-7}; }

struct Bags {
  std::vector<int64_t> indices, offsets;
  int64_t max_len = 0;
};

// Random bags with lengths in [0, max_len] (so some are empty) over `rows` rows; a small `rows`
// makes repeated indices, within one bag and across bags, certain.
Bags random_bags(Rng& rng, int64_t batch, int64_t rows, int64_t max_len) {
  Bags b;
  b.offsets.push_back(0);
  for (int64_t i = 0; i < batch; ++i) {
    int64_t len = rng.integer(0, max_len);
    if (i == 0 && batch > 2) len = 0;  // always at least one empty bag
    b.max_len = std::max(b.max_len, len);
    for (int64_t k = 0; k < len; ++k) b.indices.push_back(rng.integer(0, rows - 1));
    b.offsets.push_back(static_cast<int64_t>(b.indices.size()));
  }
  return b;
}

struct Case {
  int64_t batch, rows, dim, max_len;
};
const Case kCases[] = {{1, 1, 1, 3}, {1, 10, 16, 5}, {7, 3, 5, 6}, {64, 1000, 16, 20}, {33, 17, 33, 40}, {200, 50, 64, 8}};

TEST(EmbeddingBag, ForwardMatchesReference) {
  uint64_t seed = 1;
  for (const Case& c : kCases)
    for (DType dt : {DType::kF32, DType::kF16, DType::kBF16})
      for (PoolMode mode : {PoolMode::kSum, PoolMode::kMean}) {
        SCOPED_TRACE(::testing::Message() << "batch " << c.batch << " rows " << c.rows << " dim " << c.dim << " "
                                          << dtype_name(dt) << (mode == PoolMode::kSum ? " sum" : " mean"));
        Rng rng(seed++);
        std::vector<double> table;
        Tensor tt = random_tensor(rng, {c.rows, c.dim}, dt, &table);
        Bags b = random_bags(rng, c.batch, c.rows, c.max_len);
        Tensor idx = Tensor::from_vector(b.indices, {static_cast<int64_t>(b.indices.size())});
        Tensor off = Tensor::from_vector(b.offsets, {c.batch + 1});
        Tensor out = Tensor::empty({c.batch, c.dim}, DType::kF32);
        poison(out);
        embedding_bag_forward(tt, idx, off, mode, out);
        std::vector<double> ref_out(static_cast<size_t>(c.batch * c.dim));
        ref::embedding_bag_forward(table.data(), c.dim, b.indices.data(), b.offsets.data(), c.batch,
                                   mode == PoolMode::kMean, ref_out.data());
        EXPECT_TRUE(close(out, ref_out, pool_tol(b.max_len), "out"));
      }
}

TEST(EmbeddingBag, BackwardMatchesReference) {
  uint64_t seed = 100;
  for (const Case& c : kCases)
    for (PoolMode mode : {PoolMode::kSum, PoolMode::kMean}) {
      SCOPED_TRACE(::testing::Message() << "batch " << c.batch << " rows " << c.rows << " dim " << c.dim
                                        << (mode == PoolMode::kSum ? " sum" : " mean"));
      Rng rng(seed++);
      Bags b = random_bags(rng, c.batch, c.rows, c.max_len);
      std::vector<double> g;
      Tensor gt = random_tensor(rng, {c.batch, c.dim}, DType::kF32, &g);
      Tensor idx = Tensor::from_vector(b.indices, {static_cast<int64_t>(b.indices.size())});
      Tensor off = Tensor::from_vector(b.offsets, {c.batch + 1});
      SparseGrad sg = embedding_bag_backward(idx, off, gt, mode, c.rows);

      std::vector<double> dense(static_cast<size_t>(c.rows * c.dim));
      std::vector<unsigned char> touched(static_cast<size_t>(c.rows));
      ref::embedding_bag_backward(b.indices.data(), b.offsets.data(), c.batch, g.data(), c.dim,
                                  mode == PoolMode::kMean, c.rows, dense.data(), touched.data());
      std::vector<int64_t> want_rows;
      std::vector<double> want_values;
      for (int64_t r = 0; r < c.rows; ++r)
        if (touched[static_cast<size_t>(r)]) {
          want_rows.push_back(r);
          want_values.insert(want_values.end(), dense.begin() + r * c.dim, dense.begin() + (r + 1) * c.dim);
        }
      ASSERT_EQ(sg.rows.dtype(), DType::kI64);
      EXPECT_EQ(sg.rows.to_vector<int64_t>(), want_rows);  // unique, ascending, exactly the rows looked up
      check_shape(sg.values, {static_cast<int64_t>(want_rows.size()), c.dim}, "values");
      // A row's gradient sums one share per lookup: the count of lookups of the row bounds the terms.
      EXPECT_TRUE(close(sg.values, want_values, pool_tol(static_cast<int64_t>(b.indices.size())), "values"));
    }
}

TEST(EmbeddingBag, RepeatedIndexInOneBagCountsTwice) {
  Tensor table = Tensor::from_vector<float>({1, 2, 3, 4}, {2, 2});
  Tensor idx = Tensor::from_vector<int64_t>({1, 1, 0}, {3});
  Tensor off = Tensor::from_vector<int64_t>({0, 3}, {2});
  Tensor out = Tensor::empty({1, 2}, DType::kF32);
  embedding_bag_forward(table, idx, off, PoolMode::kSum, out);
  EXPECT_EQ(out.to_vector<float>(), (std::vector<float>{7, 10}));
  Tensor g = Tensor::from_vector<float>({0.5f, -1.0f}, {1, 2});
  SparseGrad sg = embedding_bag_backward(idx, off, g, PoolMode::kMean, 2);
  EXPECT_EQ(sg.rows.to_vector<int64_t>(), (std::vector<int64_t>{0, 1}));
  auto v = sg.values.to_vector<float>();
  EXPECT_FLOAT_EQ(v[0], 0.5f / 3);
  EXPECT_FLOAT_EQ(v[2], 2 * 0.5f / 3);
  EXPECT_FLOAT_EQ(v[3], 2 * -1.0f / 3);
}

TEST(EmbeddingBag, AllBagsEmpty) {
  Tensor table = Tensor::from_vector<float>({1, 2}, {1, 2});
  Tensor idx = Tensor::empty({0}, DType::kI64);
  Tensor off = Tensor::from_vector<int64_t>({0, 0, 0}, {3});
  Tensor out = Tensor::empty({2, 2}, DType::kF32);
  poison(out);
  embedding_bag_forward(table, idx, off, PoolMode::kMean, out);
  EXPECT_EQ(out.to_vector<float>(), (std::vector<float>{0, 0, 0, 0}));
  SparseGrad sg = embedding_bag_backward(idx, off, Tensor::zeros({2, 2}, DType::kF32), PoolMode::kSum, 1);
  EXPECT_EQ(sg.rows.numel(), 0);
  EXPECT_EQ(sg.values.shape(), (Shape{0, 2}));
}

TEST(EmbeddingBag, ReferenceBackwardMatchesFiniteDifferences) {
  const int64_t rows = 5, dim = 3, batch = 4;
  Rng rng(77);
  Bags b = random_bags(rng, batch, rows, 4);
  auto table = to_double(rng.floats(rows * dim)), r = to_double(rng.floats(batch * dim));
  for (bool mean : {false, true}) {
    auto loss = [&](const std::vector<double>& t) {
      std::vector<double> out(static_cast<size_t>(batch * dim));
      ref::embedding_bag_forward(t.data(), dim, b.indices.data(), b.offsets.data(), batch, mean, out.data());
      return dot(r, out);
    };
    std::vector<double> grad(table.size());
    ref::embedding_bag_backward(b.indices.data(), b.offsets.data(), batch, r.data(), dim, mean, rows, grad.data(),
                                static_cast<unsigned char*>(nullptr));
    EXPECT_TRUE(close(grad, finite_diff(loss, table), kFdTol, mean ? "mean grad vs FD" : "sum grad vs FD"));
  }
}

TEST(EmbeddingBag, OutOfRangeIndexNamesBagAndIndex) {
  Tensor table = Tensor::zeros({10, 4}, DType::kF32);
  Tensor idx = Tensor::from_vector<int64_t>({1, 2, 3, 10, 4}, {5});
  Tensor off = Tensor::from_vector<int64_t>({0, 2, 2, 5}, {4});
  Tensor out = Tensor::empty({3, 4}, DType::kF32);
  try {
    embedding_bag_forward(table, idx, off, PoolMode::kSum, out);
    FAIL() << "expected DataError";
  } catch (const DataError& e) {
    const std::string msg = e.what();
    EXPECT_NE(msg.find("bag 2"), std::string::npos) << msg;
    EXPECT_NE(msg.find("index 10"), std::string::npos) << msg;
  }
  Tensor neg = Tensor::from_vector<int64_t>({1, -1, 3, 0, 4}, {5});
  EXPECT_THROW(embedding_bag_forward(table, neg, off, PoolMode::kSum, out), DataError);
  EXPECT_THROW(embedding_bag_backward(idx, off, Tensor::zeros({3, 4}, DType::kF32), PoolMode::kSum, 10), DataError);
}

TEST(EmbeddingBag, RejectsBadOffsetsAndShapes) {
  Tensor table = Tensor::zeros({10, 4}, DType::kF32);
  Tensor idx = Tensor::from_vector<int64_t>({1, 2, 3}, {3});
  Tensor out = Tensor::empty({2, 4}, DType::kF32);
  EXPECT_THROW(embedding_bag_forward(table, idx, Tensor::from_vector<int64_t>({0, 1, 2}, {3}), PoolMode::kSum, out),
               DataError);  // offsets[batch] != nnz
  EXPECT_THROW(embedding_bag_forward(table, idx, Tensor::from_vector<int64_t>({0, 2, 1, 3}, {4}), PoolMode::kSum, out),
               DataError);  // decreasing
  EXPECT_THROW(embedding_bag_forward(table, idx, Tensor::from_vector<int64_t>({1, 1, 3}, {3}), PoolMode::kSum, out),
               DataError);  // does not start at 0
  Tensor off = Tensor::from_vector<int64_t>({0, 1, 3}, {3});
  Tensor wrong_out = Tensor::empty({2, 5}, DType::kF32);
  EXPECT_THROW(embedding_bag_forward(table, idx, off, PoolMode::kSum, wrong_out),
               ShapeError);
  Tensor idx32 = Tensor::from_vector<int32_t>({1, 2, 3}, {3});
  EXPECT_THROW(embedding_bag_forward(table, idx32, off, PoolMode::kSum, out), ShapeError);
  Tensor itable = Tensor::zeros({10, 4}, DType::kI32);
  EXPECT_THROW(embedding_bag_forward(itable, idx, off, PoolMode::kSum, out), ShapeError);
  EXPECT_THROW(embedding_bag_backward(idx, off, Tensor::zeros({3, 4}, DType::kF32), PoolMode::kSum, 10), ShapeError);
}

// ---- many tables at once (embedding_bags_*): table t's bags in columns [t * dim, (t + 1) * dim) -------

TEST(EmbeddingBags, ManyTablesMatchTheReferencePerTable) {
  uint64_t seed = 700;
  const int64_t batch = 37, dim = 12;
  const std::vector<int64_t> rows = {1, 50, 7, 300, 3};  // tables of different sizes; table 0 has one row
  for (DType dt : {DType::kF32, DType::kBF16})
    for (PoolMode mode : {PoolMode::kSum, PoolMode::kMean}) {
      SCOPED_TRACE(::testing::Message() << dtype_name(dt) << (mode == PoolMode::kSum ? " sum" : " mean"));
      Rng rng(seed++);
      const int64_t T = static_cast<int64_t>(rows.size());
      std::vector<std::vector<double>> ref_tables(rows.size());
      std::vector<Tensor> tables, idx, off;
      std::vector<Bags> bags;
      for (int64_t t = 0; t < T; ++t) {
        tables.push_back(random_tensor(rng, {rows[t], dim}, dt, &ref_tables[t]));
        bags.push_back(random_bags(rng, batch, rows[t], 1 + 3 * t));
        idx.push_back(Tensor::from_vector(bags[t].indices, {static_cast<int64_t>(bags[t].indices.size())}));
        off.push_back(Tensor::from_vector(bags[t].offsets, {batch + 1}));
      }
      Tensor out = Tensor::empty({batch, T * dim}, DType::kF32);
      poison(out);
      embedding_bags_forward(tables, idx, off, mode, out);
      std::vector<double> g;
      Tensor go = random_tensor(rng, {batch, T * dim}, DType::kF32, &g);
      std::vector<SparseGrad> grads = embedding_bags_backward(idx, off, go, mode, rows);
      ASSERT_EQ(grads.size(), rows.size());
      const bool mean = mode == PoolMode::kMean;
      for (int64_t t = 0; t < T; ++t) {
        SCOPED_TRACE(::testing::Message() << "table " << t);
        const Bags& b = bags[t];
        std::vector<double> want(static_cast<size_t>(batch * dim));
        ref::embedding_bag_forward(ref_tables[t].data(), dim, b.indices.data(), b.offsets.data(), batch, mean,
                                   want.data());
        Tensor cols = Tensor::empty({batch, dim}, DType::kF32);
        for (int64_t r = 0; r < batch; ++r)
          for (int64_t d = 0; d < dim; ++d) cols.data<float>()[r * dim + d] = out.data<float>()[r * T * dim + t * dim + d];
        EXPECT_TRUE(close(cols, want, pool_tol(b.max_len), "out columns"));

        std::vector<double> gt(static_cast<size_t>(batch * dim));
        for (int64_t r = 0; r < batch; ++r)
          for (int64_t d = 0; d < dim; ++d) gt[static_cast<size_t>(r * dim + d)] = g[static_cast<size_t>(r * T * dim + t * dim + d)];
        std::vector<double> dense(static_cast<size_t>(rows[t] * dim));
        std::vector<unsigned char> touched(static_cast<size_t>(rows[t]));
        ref::embedding_bag_backward(b.indices.data(), b.offsets.data(), batch, gt.data(), dim, mean, rows[t],
                                    dense.data(), touched.data());
        std::vector<int64_t> want_rows;
        std::vector<double> want_values;
        for (int64_t r = 0; r < rows[t]; ++r)
          if (touched[static_cast<size_t>(r)]) {
            want_rows.push_back(r);
            want_values.insert(want_values.end(), dense.begin() + r * dim, dense.begin() + (r + 1) * dim);
          }
        EXPECT_EQ(grads[t].rows.to_vector<int64_t>(), want_rows);
        EXPECT_TRUE(close(grads[t].values, want_values, pool_tol(static_cast<int64_t>(b.indices.size())), "values"));
      }
    }
}

TEST(EmbeddingBags, ErrorsNameTheTable) {
  std::vector<Tensor> tables = {Tensor::zeros({10, 4}, DType::kF32), Tensor::zeros({5, 4}, DType::kF32)};
  std::vector<Tensor> idx = {Tensor::from_vector<int64_t>({1, 2}, {2}), Tensor::from_vector<int64_t>({4, 5}, {2})};
  std::vector<Tensor> off = {Tensor::from_vector<int64_t>({0, 1, 2}, {3}), Tensor::from_vector<int64_t>({0, 2, 2}, {3})};
  Tensor out = Tensor::empty({2, 8}, DType::kF32);
  try {
    embedding_bags_forward(tables, idx, off, PoolMode::kSum, out);
    FAIL() << "expected DataError";
  } catch (const DataError& e) {
    const std::string msg = e.what();
    EXPECT_NE(msg.find("table 1"), std::string::npos) << msg;
    EXPECT_NE(msg.find("index 5"), std::string::npos) << msg;
  }
  EXPECT_THROW(embedding_bags_backward(idx, off, Tensor::zeros({2, 8}, DType::kF32), PoolMode::kSum, {10, 5}),
               DataError);
  idx[1] = Tensor::from_vector<int64_t>({4, 0}, {2});
  // Shapes: out of the wrong width, tables of different dims, a batch that differs between tables.
  Tensor narrow = Tensor::empty({2, 4}, DType::kF32);
  EXPECT_THROW(embedding_bags_forward(tables, idx, off, PoolMode::kSum, narrow), ShapeError);
  std::vector<Tensor> mixed = {tables[0], Tensor::zeros({5, 3}, DType::kF32)};
  EXPECT_THROW(embedding_bags_forward(mixed, idx, off, PoolMode::kSum, out), ShapeError);
  std::vector<Tensor> off3 = {off[0], Tensor::from_vector<int64_t>({0, 1, 1, 2}, {4})};
  try {
    embedding_bags_forward(tables, idx, off3, PoolMode::kSum, out);
    FAIL() << "expected ShapeError";
  } catch (const ShapeError& e) {
    EXPECT_NE(std::string(e.what()).find("table 1"), std::string::npos) << e.what();
  }
  EXPECT_THROW(embedding_bags_backward(idx, off, Tensor::zeros({2, 7}, DType::kF32), PoolMode::kSum, {10, 5}),
               ShapeError);
  EXPECT_THROW(embedding_bags_forward({}, {}, {}, PoolMode::kSum, out), ShapeError);
}

// check_embedding_bags (what a CUDA graph step runs on its host batches) finds exactly what the forward's
// own checks find, with the same message, in its single parallel pass over many lookups as well.
TEST(EmbeddingBags, CheckAloneThrowsWhatTheForwardThrows) {
  const std::vector<int64_t> rows = {1000, 7, 300};
  const int64_t batch = 30000;  // 90000 lookups: above the parallel pass's threshold
  auto bags = [&]() {
    std::vector<Tensor> idx, off;
    for (size_t t = 0; t < rows.size(); ++t) {
      std::vector<int64_t> i(static_cast<size_t>(batch)), o(static_cast<size_t>(batch) + 1);
      for (int64_t b = 0; b <= batch; ++b) o[static_cast<size_t>(b)] = b;
      for (int64_t b = 0; b < batch; ++b) i[static_cast<size_t>(b)] = (b * 7919 + static_cast<int64_t>(t)) % rows[t];
      idx.push_back(Tensor::from_vector(i, {batch}));
      off.push_back(Tensor::from_vector(o, {batch + 1}));
    }
    return std::make_pair(idx, off);
  };
  std::vector<Tensor> tables;
  for (int64_t r : rows) tables.push_back(Tensor::zeros({r, 4}, DType::kF32));
  Tensor out = Tensor::empty({batch, 12}, DType::kF32);
  {
    auto [idx, off] = bags();
    EXPECT_NO_THROW(check_embedding_bags(idx, off, rows));
  }
  auto message = [](auto&& f) {
    try {
      f();
    } catch (const DataError& e) {
      return std::string(e.what());
    }
    return std::string("no DataError");
  };
  // (table, what to plant)
  const std::vector<std::pair<size_t, std::function<void(Tensor&, Tensor&)>>> faults = {
      {2, [](Tensor& i, Tensor&) { i.data<int64_t>()[12345] = 300; }},    // one past the end
      {1, [](Tensor& i, Tensor&) { i.data<int64_t>()[29999] = -1; }},     // negative, last bag
      {1, [](Tensor&, Tensor& o) { o.data<int64_t>()[500] = 502; }},      // offsets decrease after bag 500
      {0, [](Tensor&, Tensor& o) { o.data<int64_t>()[0] = 1; }},          // offsets[0] != 0
      {2, [](Tensor&, Tensor& o) { o.data<int64_t>()[batch] = batch - 1; }},  // offsets[batch] != nnz
  };
  for (const auto& [t, plant] : faults) {
    auto [idx, off] = bags();
    plant(idx[t], off[t]);
    const std::string alone = message([&] { check_embedding_bags(idx, off, rows); });
    const std::string forward = message([&] { embedding_bags_forward(tables, idx, off, PoolMode::kSum, out); });
    EXPECT_NE(alone.find("(table " + std::to_string(t) + ")"), std::string::npos) << alone;
    EXPECT_EQ(alone, forward);
  }
}

TEST(EmbeddingBag, ParsePoolMode) {
  EXPECT_EQ(parse_pool_mode("sum"), PoolMode::kSum);
  EXPECT_EQ(parse_pool_mode("mean"), PoolMode::kMean);
  EXPECT_THROW(parse_pool_mode("max"), ConfigError);
}

}  // namespace
}  // namespace rf::test
