// Helpers of the loader tests: a temporary directory, and position-coded data where every row holds
// its own global index (dense 1 = index exactly in f32, the categorical rows and the multi-hot bag are
// functions of it), so coverage, order and resume can be checked row by row.
#pragma once

#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "dataloader/batch.h"
#include "dataloader/schema.h"
#include "dataloader/shard_writer.h"

namespace rf::data::testing {

struct TempDir {
  std::string path;
  TempDir() {
    static int counter = 0;
    const auto* info = ::testing::UnitTest::GetInstance()->current_test_info();
    path = (std::filesystem::temp_directory_path() /
            (std::string("rf_loader_") + std::to_string(getpid()) + "_" + info->test_suite_name() + "_" + info->name() + "_" +
             std::to_string(counter++)))
               .string();
    std::filesystem::remove_all(path);
    std::filesystem::create_directories(path);
  }
  ~TempDir() { std::filesystem::remove_all(path); }
  std::string operator/(const std::string& name) const { return path + "/" + name; }
};

// label, 2 dense, 2 categorical, 1 multi-hot; 1000 rows per table.
inline ColumnSchema coded_schema() {
  ColumnSchema s = ColumnSchema::parse({"label", "dense*2", "cat*2", "multi*1"});
  s.hash_buckets = {1000};
  return s;
}

inline int64_t coded_bag(int64_t id) { return 1 + id % 3; }
inline int64_t coded_cat(int64_t id, int f) { return 1 + (id * (f + 3)) % 999; }
inline int64_t coded_multi(int64_t id, int64_t j) { return 1 + (id + 7 * j) % 999; }

// Rows [first, first + n) of the position-coded data set.
inline Batch coded_batch(int64_t first, int64_t n) {
  Batch b;
  b.labels = Tensor::empty({n}, DType::kF32);
  b.dense = Tensor::empty({n, 2}, DType::kF32);
  std::vector<int64_t> c0, c1, m, o1, om{0};
  for (int64_t i = 0; i < n; ++i) {
    int64_t id = first + i;
    b.labels.data<float>()[i] = static_cast<float>(id % 2);
    b.dense.data<float>()[2 * i] = static_cast<float>(id);
    b.dense.data<float>()[2 * i + 1] = static_cast<float>(id) * 0.25f;
    c0.push_back(coded_cat(id, 0));
    c1.push_back(coded_cat(id, 1));
    for (int64_t j = 0; j < coded_bag(id); ++j) m.push_back(coded_multi(id, j));
    om.push_back(static_cast<int64_t>(m.size()));
  }
  for (int64_t i = 0; i <= n; ++i) o1.push_back(i);
  b.indices = {Tensor::from_vector(c0, {n}), Tensor::from_vector(c1, {n}),
               Tensor::from_vector(m, {static_cast<int64_t>(m.size())})};
  b.offsets = {Tensor::from_vector(o1, {n + 1}), Tensor::from_vector(o1, {n + 1}), Tensor::from_vector(om, {n + 1})};
  return b;
}

// Writes shards of the given sizes into `dir` (global indices consecutive across shards).
inline void write_coded_shards(const std::string& dir, const std::vector<int64_t>& sizes, int64_t block_rows) {
  int64_t first = 0;
  for (size_t s = 0; s < sizes.size(); ++s) {
    char name[48];
    std::snprintf(name, sizeof name, "/part-%05zu.rfshard", s);
    write_shard(dir + name, coded_schema(), coded_batch(first, sizes[s]), block_rows);
    first += sizes[s];
  }
}

// Checks every row of `b` against its code and returns the row ids in order.
inline std::vector<int64_t> check_and_ids(const Batch& b) {
  std::vector<int64_t> ids;
  const float* d = b.dense.data<float>();
  for (int64_t i = 0; i < b.size(); ++i) {
    int64_t id = static_cast<int64_t>(d[2 * i]);
    ids.push_back(id);
    EXPECT_EQ(d[2 * i + 1], static_cast<float>(id) * 0.25f) << "row " << id;
    EXPECT_EQ(b.labels.data<float>()[i], static_cast<float>(id % 2)) << "row " << id;
    for (int f = 0; f < 2; ++f) {
      EXPECT_EQ(b.offsets[f].data<int64_t>()[i + 1] - b.offsets[f].data<int64_t>()[i], 1);
      EXPECT_EQ(b.indices[f].data<int64_t>()[b.offsets[f].data<int64_t>()[i]], coded_cat(id, f)) << "row " << id;
    }
    const int64_t* om = b.offsets[2].data<int64_t>();
    EXPECT_EQ(om[i + 1] - om[i], coded_bag(id)) << "row " << id;
    for (int64_t j = 0; j < om[i + 1] - om[i] && j < coded_bag(id); ++j)
      EXPECT_EQ(b.indices[2].data<int64_t>()[om[i] + j], coded_multi(id, j)) << "row " << id;
  }
  return ids;
}

}  // namespace rf::data::testing
