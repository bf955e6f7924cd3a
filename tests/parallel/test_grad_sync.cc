// GradientBuckets against a plain all-reduce of each gradient (several bucket sizes, one parameter
// larger than a bucket, any marking order, several steps), parameter broadcast, the exact sparse
// gradient merge and the exact global AUC.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <map>
#include <numeric>
#include <random>

#include "parallel/grad_sync.h"
#include "tests/parallel/test_util.h"

namespace rf {
namespace {

using test::make_tensor;
using test::read_tensor;

struct Model {
  std::vector<Parameter> storage;
  ParameterList list;
  explicit Model(Device dev) {
    // Registration order; sizes chosen so that small buckets split them and one (1000) exceeds them.
    const std::vector<Shape> shapes = {{3, 5}, {7}, {1000}, {4, 4}, {257}, {1}, {33, 3}};
    storage.resize(shapes.size() + 1);
    for (size_t k = 0; k < shapes.size(); ++k) {
      storage[k].name = "p" + std::to_string(k);
      storage[k].value = Tensor::zeros(shapes[k], DType::kF32, dev);
      storage[k].grad = Tensor::zeros(shapes[k], DType::kF32, dev);
    }
    Parameter& table = storage.back();  // sparse: ignored by the buckets
    table.name = "table";
    table.sparse = true;
    table.value = Tensor::zeros({10, 2}, DType::kF32, dev);
    for (Parameter& p : storage) list.push_back(&p);
  }
};

// Gradient values of rank r at a step: small integers plus an offset summing to zero over ranks, so
// the average is exact and independent of the summation order.
void fill_grads(Model& m, int r, int n, int step) {
  for (size_t k = 0; k + 1 < m.storage.size(); ++k) {
    Parameter& p = m.storage[k];
    std::vector<double> v(static_cast<size_t>(p.grad.numel()));
    for (size_t i = 0; i < v.size(); ++i)
      v[i] = static_cast<double>((i * 7 + k * 3 + step) % 29) - 14.0 + (2.0 * r - (n - 1)) * 0.5;
    p.grad.copy_from(make_tensor(v, DType::kF32, p.grad.device()).view(p.grad.shape()));
  }
}

class GradSync : public ::testing::TestWithParam<std::string> {};

TEST_P(GradSync, BucketsEqualPlainAllReduceOfEachGrad) {
  RF_COMM_OR_SKIP(comm, GetParam());
  const int n = comm->size(), r = comm->rank();
  // 25 MiB: one bucket; 0.002 MiB (2097 bytes): several, and p2 (4000 bytes) alone; 1e-6: one each.
  for (double mb : {25.0, 0.002, 1e-6}) {
    for (int mode = 0; mode < 3; ++mode) {  // 0: backward order, 1: shuffled order, 2: finish() only
      SCOPED_TRACE("bucket_mb " + std::to_string(mb) + " mode " + std::to_string(mode));
      Model bucketed(comm->device()), plain(comm->device());
      GradientBuckets buckets(*comm, bucketed.list, mb);
      if (mb == 25.0) {
        EXPECT_EQ(buckets.num_buckets(), 1u);
      }
      if (mb == 1e-6) {
        EXPECT_EQ(buckets.num_buckets(), 7u);
      }
      if (mb == 0.002) {
        EXPECT_GT(buckets.num_buckets(), 2u);
        bool alone = false;
        for (size_t b = 0; b < buckets.num_buckets(); ++b)
          alone |= buckets.bucket_params(b) == std::vector<size_t>{2};
        EXPECT_TRUE(alone) << "the 1000-element parameter should have a bucket of its own";
      }
      EXPECT_EQ(buckets.bucket_params(0).front(), 6u) << "the last registered parameter fills the first bucket";
      for (int step = 0; step < 3; ++step) {
        fill_grads(bucketed, r, n, step);
        fill_grads(plain, r, n, step);
        std::vector<size_t> order = {6, 5, 4, 3, 2, 1, 0};
        if (mode == 1) std::shuffle(order.begin(), order.end(), std::mt19937(7 + step));  // same on all ranks
        if (mode != 2)
          for (size_t k : order) buckets.mark_ready(&bucketed.storage[k]);
        buckets.finish();
        for (size_t k = 0; k + 1 < plain.storage.size(); ++k) {
          comm->all_reduce(plain.storage[k].grad, ReduceOp::kAvg);
          EXPECT_EQ(read_tensor(bucketed.storage[k].grad), read_tensor(plain.storage[k].grad))
              << "parameter " << k << " step " << step;
        }
      }
    }
  }
}

TEST_P(GradSync, MarkingErrors) {
  RF_COMM_OR_SKIP(comm, GetParam());
  if (comm->size() == 1) GTEST_SKIP() << "a world of one does no bookkeeping";
  Model m(comm->device());
  GradientBuckets buckets(*comm, m.list, 25.0);
  Parameter stranger;
  EXPECT_THROW(buckets.mark_ready(&stranger), Error);
  EXPECT_THROW(buckets.mark_ready(&m.storage.back()), Error);  // the sparse table
  buckets.mark_ready(&m.storage[0]);
  EXPECT_THROW(buckets.mark_ready(&m.storage[0]), Error);
  buckets.finish();
}

TEST_P(GradSync, BroadcastParametersFromRoot) {
  RF_COMM_OR_SKIP(comm, GetParam());
  const int n = comm->size(), r = comm->rank();
  Model m(comm->device());
  for (Parameter* p : m.list) {
    std::vector<double> v(static_cast<size_t>(p->value.numel()));
    for (size_t i = 0; i < v.size(); ++i) v[i] = static_cast<double>(i % 13) + 100.0 * r;
    p->value.copy_from(make_tensor(v, DType::kF32, p->value.device()).view(p->value.shape()));
  }
  broadcast_parameters(*comm, m.list, n - 1);
  for (Parameter* p : m.list) {
    std::vector<double> got = read_tensor(p->value.view({p->value.numel()}));
    for (size_t i = 0; i < got.size(); ++i) ASSERT_EQ(got[i], static_cast<double>(i % 13) + 100.0 * (n - 1)) << p->name;
  }
}

TEST_P(GradSync, SparseGradsMergeExactly) {
  RF_COMM_OR_SKIP(comm, GetParam());
  const int n = comm->size(), r = comm->rank();
  const int64_t dim = 3;
  // Rank r touches rows {r, r+2, 7} (rank 0 touches nothing when n > 1), value = 100*row + 10*r + j.
  auto rows_of = [n](int rank) {
    std::vector<int64_t> rows;
    if (rank == 0 && n > 1) return rows;
    for (int64_t row : {int64_t{rank}, int64_t{rank} + 2, int64_t{7}}) rows.push_back(row);
    std::sort(rows.begin(), rows.end());
    rows.erase(std::unique(rows.begin(), rows.end()), rows.end());
    return rows;
  };
  auto value = [](int64_t row, int rank, int64_t j) { return 100.0f * row + 10.0f * rank + j + 0.25f; };
  Parameter p;
  p.name = "table";
  p.sparse = true;
  p.value = Tensor::zeros({10, dim}, DType::kF32);
  std::vector<int64_t> mine = rows_of(r);
  std::vector<float> vals;
  for (int64_t row : mine)
    for (int64_t j = 0; j < dim; ++j) vals.push_back(value(row, r, j));
  p.sparse_grad.rows = Tensor::from_vector(mine, {static_cast<int64_t>(mine.size())});
  p.sparse_grad.values = Tensor::from_vector(vals, {static_cast<int64_t>(mine.size()), dim});
  sync_sparse_grads(*comm, p);

  // Reference: per row, the partial sums added in rank order in fp32, then divided by n.
  std::map<int64_t, std::vector<float>> want;
  for (int q = 0; q < n; ++q)
    for (int64_t row : rows_of(q)) {
      auto& acc = want.try_emplace(row, std::vector<float>(dim, 0.0f)).first->second;
      for (int64_t j = 0; j < dim; ++j) acc[j] += value(row, q, j);
    }
  ASSERT_EQ(p.sparse_grad.rows.numel(), static_cast<int64_t>(want.size()));
  check_shape(p.sparse_grad.values, {static_cast<int64_t>(want.size()), dim}, "merged values");
  std::vector<int64_t> got_rows = p.sparse_grad.rows.to_vector<int64_t>();
  std::vector<float> got_vals = p.sparse_grad.values.to_vector<float>();
  size_t i = 0;
  for (auto& [row, acc] : want) {
    EXPECT_EQ(got_rows[i], row);
    for (int64_t j = 0; j < dim; ++j) EXPECT_EQ(got_vals[i * dim + j], acc[j] / static_cast<float>(n)) << "row " << row;
    ++i;
  }
}

TEST_P(GradSync, GatheredMetricsEqualTheWholeSet) {
  RF_COMM_OR_SKIP(comm, GetParam());
  const int n = comm->size(), r = comm->rank();
  // A global evaluation set with ties, split contiguously and unevenly across ranks.
  const size_t total = 1001;
  std::vector<float> scores(total), labels(total);
  std::mt19937 rng(3);
  for (size_t i = 0; i < total; ++i) {
    labels[i] = static_cast<float>(rng() % 2);
    scores[i] = static_cast<float>(static_cast<int>(rng() % 64) - 32) / 8.0f + 0.5f * labels[i];
  }
  BinaryMetrics whole;
  whole.add(scores.data(), labels.data(), total);
  size_t begin = total * r / n, end = total * (r + 1) / n;
  BinaryMetrics part;
  part.add(scores.data() + begin, labels.data() + begin, end - begin);
  gather_metrics(*comm, part);
  EXPECT_EQ(part.count(), total);
  EXPECT_EQ(part.positives(), whole.positives());
  EXPECT_EQ(part.auc(), whole.auc());
  EXPECT_EQ(part.logloss(), whole.logloss());
  EXPECT_EQ(part.accuracy(), whole.accuracy());
}

INSTANTIATE_TEST_SUITE_P(Backends, GradSync, ::testing::Values("mpi", "nccl"),
                         [](const auto& info) { return info.param; });

}  // namespace
}  // namespace rf
