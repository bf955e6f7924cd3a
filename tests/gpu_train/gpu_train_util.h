// Helpers of the GPU training tests: the skip macro, small model configs, random batches with
// multi-hot bags and repeated rows, and `abs + rel * |ref|` comparisons of whole tensors.
#pragma once

#include <gtest/gtest.h>

#include <cmath>
#include <random>
#include <string>

#include "dataloader/batch.h"
#include "src/core/allocator.h"
#include "src/model/model.h"

namespace rf::test {

#define RF_REQUIRE_GPU()                                                                                     \
  do {                                                                                                       \
    if (!::rf::cuda_available())                                                                             \
      GTEST_SKIP() << "no CUDA device visible to this process (cuda_available() is false): the GPU training " \
                      "step cannot run here";                                                                \
  } while (0)

struct Tol {
  double abs, rel;
};

// Worst violation of |got - ref| <= abs + rel * |ref| over all elements, as a gtest assertion result.
inline ::testing::AssertionResult close(const Tensor& got_any, const Tensor& ref_any, Tol tol) {
  const Tensor got = got_any.to(Device::cpu()), ref = ref_any.to(Device::cpu());
  if (got.shape() != ref.shape())
    return ::testing::AssertionFailure() << "shape " << shape_str(got.shape()) << " vs " << shape_str(ref.shape());
  const float* g = got.data<float>();
  const float* r = ref.data<float>();
  double worst = 0;
  int64_t at = -1;
  for (int64_t i = 0; i < got.numel(); ++i) {
    const double err = std::fabs(static_cast<double>(g[i]) - r[i]);
    const double lim = tol.abs + tol.rel * std::fabs(static_cast<double>(r[i]));
    if (!(err <= lim) && (at < 0 || err / lim > worst)) {
      worst = err / lim;
      at = i;
    }
  }
  if (at < 0) return ::testing::AssertionSuccess();
  return ::testing::AssertionFailure() << "element " << at << ": got " << g[at] << ", expected " << r[at]
                                       << " (error " << worst << "x the tolerance)";
}

inline ModelConfig small_model(const std::string& type, Device device, DType compute = DType::kF32) {
  ModelConfig m;
  m.type = type;
  m.num_dense = 13;
  m.table_sizes = {50, 7, 300, 20, 90};
  m.embedding_dim = 8;
  m.bottom_mlp = {32, 8};
  m.top_mlp = {24, 16, 1};
  m.cross_layers = 2;
  m.cross_rank = type == "dcnv2" ? 0 : 0;
  m.seed = 77;
  m.compute = compute;
  m.device = device;
  return m;
}

// Host batch: dense in [0, 5) (log-transformed counts), bags of 1-3 lookups (small tables repeat rows
// inside and across bags, which exercises the sparse gradient's duplicate sums), labels 0/1.
inline data::Batch random_batch(const ModelConfig& m, int64_t batch, uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::uniform_real_distribution<float> dense(0.0f, 5.0f);
  data::Batch b;
  b.labels = Tensor::empty({batch}, DType::kF32);
  b.dense = Tensor::empty({batch, m.num_dense}, DType::kF32);
  for (int64_t i = 0; i < batch; ++i) b.labels.data<float>()[i] = static_cast<float>(rng() & 1u);
  for (int64_t i = 0; i < b.dense.numel(); ++i) b.dense.data<float>()[i] = dense(rng);
  for (int64_t rows : m.table_sizes) {
    std::vector<int64_t> idx, off{0};
    for (int64_t i = 0; i < batch; ++i) {
      const int64_t len = 1 + static_cast<int64_t>(rng() % 3);
      for (int64_t k = 0; k < len; ++k) idx.push_back(static_cast<int64_t>(rng() % static_cast<uint64_t>(rows)));
      off.push_back(static_cast<int64_t>(idx.size()));
    }
    b.indices.push_back(Tensor::from_vector(idx, {static_cast<int64_t>(idx.size())}));
    b.offsets.push_back(Tensor::from_vector(off, {batch + 1}));
  }
  return b;
}

inline data::Batch batch_to(const data::Batch& b, Device dev) {
  data::Batch out;
  out.labels = b.labels.to(dev);
  out.dense = b.dense.to(dev);
  for (const Tensor& t : b.indices) out.indices.push_back(t.to(dev));
  for (const Tensor& t : b.offsets) out.offsets.push_back(t.to(dev));
  return out;
}

}  // namespace rf::test
