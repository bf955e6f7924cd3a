// Small models and random batches shared by the training tests (CPU and GPU): five tables of 7-300
// rows, dim 8, and host batches with multi-hot bags whose small tables repeat rows inside and across
// bags (the sparse gradient's duplicate sums).
#pragma once

#include <cstdint>
#include <random>
#include <string>
#include <vector>

#include "dataloader/batch.h"
#include "src/model/model.h"

namespace rf::test {

inline ModelConfig small_model(const std::string& type, Device device, DType compute = DType::kF32) {
  ModelConfig m;
  m.type = type;
  m.num_dense = 13;
  m.table_sizes = {50, 7, 300, 20, 90};
  m.embedding_dim = 8;
  m.bottom_mlp = {32, 8};
  m.top_mlp = {24, 16, 1};
  m.cross_layers = 2;
  m.cross_rank = 0;
  m.seed = 77;
  m.compute = compute;
  m.device = device;
  return m;
}

// Host batch: dense in [0, 5) (log-transformed counts), bags of 1-3 lookups (small tables repeat rows
// inside and across bags, which exercises the sparse gradient's duplicate sums), labels 0/1. bag > 0:
// every bag holds exactly `bag` lookups, so batches of one size have one shape (CUDA graph replays).
inline data::Batch random_batch(const ModelConfig& m, int64_t batch, uint64_t seed, int64_t bag = 0) {
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
      const int64_t drawn = 1 + static_cast<int64_t>(rng() % 3);
      const int64_t len = bag > 0 ? bag : drawn;
      for (int64_t k = 0; k < len; ++k) idx.push_back(static_cast<int64_t>(rng() % static_cast<uint64_t>(rows)));
      off.push_back(static_cast<int64_t>(idx.size()));
    }
    b.indices.push_back(Tensor::from_vector(idx, {static_cast<int64_t>(idx.size())}));
    b.offsets.push_back(Tensor::from_vector(off, {batch + 1}));
  }
  return b;
}

}  // namespace rf::test
