// Sources over position-coded shards: every row exactly once per epoch across 1-4 simulated ranks
// (also with fewer files than ranks), shuffle determinism per (seed, epoch), exact resume from a
// position, prefetch errors, and the TSV-backed source.
#include <algorithm>
#include <fstream>
#include <functional>
#include <numeric>
#include <set>

#include <gtest/gtest.h>

#include "dataloader/batch_source.h"
#include "dataloader/shard_reader.h"
#include "tests/loader/loader_util.h"

namespace rf::data {
namespace {

using testing::TempDir;

LoaderOptions opts(bool shuffle, int threads, uint64_t seed = 7) {
  LoaderOptions o;
  o.shuffle = shuffle;
  o.seed = seed;
  o.threads = threads;
  o.prefetch_depth = 3;
  return o;
}

// Runs one epoch on `world` ranks in lockstep; returns per-step, per-rank row ids.
std::vector<std::vector<std::vector<int64_t>>> run_epoch(std::vector<std::unique_ptr<BatchSource>>& ranks,
                                                         int64_t epoch) {
  std::vector<std::vector<std::vector<int64_t>>> steps;
  for (auto& r : ranks) r->start_epoch(epoch);
  for (;;) {
    std::vector<std::vector<int64_t>> step;
    int got = 0;
    for (auto& r : ranks) {
      Batch b;
      if (r->next(b)) {
        ++got;
        step.push_back(testing::check_and_ids(b));
      }
    }
    if (got == 0) break;
    EXPECT_EQ(got, static_cast<int>(ranks.size())) << "ranks disagree on the number of steps";
    steps.push_back(step);
  }
  return steps;
}

std::vector<std::unique_ptr<BatchSource>> open_ranks(const std::string& dir, int world, int64_t batch,
                                                     const LoaderOptions& o) {
  std::vector<std::unique_ptr<BatchSource>> ranks;
  for (int r = 0; r < world; ++r) ranks.push_back(open_train_source(testing::coded_schema(), dir, batch, r, world, o));
  return ranks;
}

std::vector<int64_t> flatten(const std::vector<std::vector<std::vector<int64_t>>>& steps) {
  std::vector<int64_t> all;
  for (const auto& s : steps)
    for (const auto& r : s) all.insert(all.end(), r.begin(), r.end());
  return all;
}

TEST(ShardSource, EveryRowExactlyOncePerEpochAcrossRanks) {
  TempDir many, one;
  testing::write_coded_shards(many.path, {300, 7, 129, 64}, 32);  // 500 rows, uneven shards and blocks
  testing::write_coded_shards(one.path, {500}, 32);               // fewer files than ranks
  for (const std::string& dir : {many.path, one.path}) {
    for (int world = 1; world <= 4; ++world) {
      for (bool shuffle : {false, true}) {
        for (int threads : {0, 2}) {
          SCOPED_TRACE(dir + " world " + std::to_string(world) + " shuffle " + std::to_string(shuffle) +
                       " threads " + std::to_string(threads));
          auto ranks = open_ranks(dir, world, 48, opts(shuffle, threads));
          for (int64_t epoch = 0; epoch < 2; ++epoch) {
            auto steps = run_epoch(ranks, epoch);
            ASSERT_EQ(steps.size(), 11u);  // ceil(500 / 48)
            EXPECT_EQ(ranks[0]->batches_per_epoch(), 11);
            for (size_t k = 0; k < steps.size(); ++k) {
              size_t global = 0;
              for (const auto& part : steps[k]) global += part.size();
              EXPECT_EQ(global, k + 1 < steps.size() ? 48u : 500u - 480u);
              for (const auto& part : steps[k])  // parts differ by at most one row
                EXPECT_LE(part.size(), global / static_cast<size_t>(world) + 1);
            }
            std::vector<int64_t> all = flatten(steps);
            std::sort(all.begin(), all.end());
            std::vector<int64_t> want(500);
            std::iota(want.begin(), want.end(), 0);
            EXPECT_EQ(all, want);
          }
        }
      }
    }
  }
}

TEST(ShardSource, ShuffleIsDeterministicAndDiffersAcrossEpochsAndSeeds) {
  TempDir dir;
  testing::write_coded_shards(dir.path, {400, 200}, 50);
  auto order = [&](uint64_t seed, int64_t epoch, int threads) {
    auto ranks = open_ranks(dir.path, 1, 64, opts(true, threads, seed));
    return flatten(run_epoch(ranks, epoch));
  };
  std::vector<int64_t> e0 = order(7, 0, 2);
  EXPECT_EQ(e0, order(7, 0, 0));  // the same with or without workers
  EXPECT_EQ(e0, order(7, 0, 2));
  std::vector<int64_t> e1 = order(7, 1, 2);
  EXPECT_NE(e0, e1);
  EXPECT_NE(e0, order(8, 0, 2));
  std::vector<int64_t> sorted(e0);
  std::sort(sorted.begin(), sorted.end());
  EXPECT_NE(e0, sorted);
  // Within-block shuffle: the first 50 rows delivered are one block, but not in file order.
  std::vector<int64_t> first(e0.begin(), e0.begin() + 50);
  EXPECT_FALSE(std::is_sorted(first.begin(), first.end()));
  EXPECT_EQ(*std::max_element(first.begin(), first.end()) - *std::min_element(first.begin(), first.end()), 49);
}

TEST(ShardSource, ResumeMidEpochDeliversExactlyTheRemainingRows) {
  TempDir dir;
  testing::write_coded_shards(dir.path, {250, 250}, 32);
  for (int world : {1, 3}) {
    for (int threads : {0, 2}) {
      SCOPED_TRACE("world " + std::to_string(world) + " threads " + std::to_string(threads));
      auto straight = open_ranks(dir.path, world, 40, opts(true, threads));
      std::vector<std::vector<std::vector<int64_t>>> want = run_epoch(straight, 1);
      auto first = open_ranks(dir.path, world, 40, opts(true, threads));
      std::vector<LoaderPosition> saved;
      for (auto& r : first) {
        r->start_epoch(1);
        Batch b;
        for (int k = 0; k < 5; ++k) ASSERT_TRUE(r->next(b));
        saved.push_back(r->position());
      }
      EXPECT_EQ(saved[0].epoch, 1);
      EXPECT_EQ(saved[0].batch, 5);
      EXPECT_EQ(LoaderPosition::parse(saved[0].str()), saved[0]);
      auto resumed = open_ranks(dir.path, world, 40, opts(true, threads));
      std::vector<std::vector<std::vector<int64_t>>> rest;
      for (size_t r = 0; r < resumed.size(); ++r) resumed[r]->seek(saved[r]);
      for (;;) {
        std::vector<std::vector<int64_t>> step;
        for (auto& r : resumed) {
          Batch b;
          if (r->next(b)) step.push_back(testing::check_and_ids(b));
        }
        if (step.empty()) break;
        rest.push_back(step);
      }
      ASSERT_EQ(rest.size() + 5, want.size());
      for (size_t k = 0; k < rest.size(); ++k) EXPECT_EQ(rest[k], want[k + 5]) << "step " << k + 5;
      EXPECT_EQ(resumed[0]->position().batch, static_cast<int64_t>(want.size()));
      // A position saved with another world size or batch size is refused.
      auto other = open_ranks(dir.path, world + 1, 40, opts(true, threads));
      if (world == 1) {
        try {
          other[0]->seek(saved[0]);
          FAIL() << "no error";
        } catch (const DataError& e) {
          EXPECT_NE(std::string(e.what()).find("saved with another batch size or world size"), std::string::npos);
        }
      }
    }
  }
}

// Reads `dir` in batches of `batch` rows with and without shuffling, decoded inline and by two workers;
// calls check(batch, i, id) for every row (its id is dense feature 0) and expects every id in
// [0, rows) exactly once per pass.
void read_every_way(const ColumnSchema& schema, const std::string& dir, int64_t batch, int64_t rows,
                    const std::function<void(const Batch&, int64_t, int64_t)>& check) {
  for (bool shuffle : {false, true}) {
    for (int threads : {0, 2}) {
      SCOPED_TRACE("shuffle " + std::to_string(shuffle) + " threads " + std::to_string(threads));
      auto src = open_train_source(schema, dir, batch, 0, 1, opts(shuffle, threads));
      std::vector<int64_t> seen;
      Batch b;
      while (src->next(b)) {
        for (int64_t i = 0; i < b.size(); ++i) {
          const int64_t id = static_cast<int64_t>(b.dense.data<float>()[i * b.num_dense()]);
          seen.push_back(id);
          check(b, i, id);
        }
      }
      std::sort(seen.begin(), seen.end());
      std::vector<int64_t> want(static_cast<size_t>(rows));
      std::iota(want.begin(), want.end(), 0);
      EXPECT_EQ(seen, want);
    }
  }
}

// The decoder's fast paths (whole-block staging, four adjacent categorical columns transposed together
// with AVX2 where present, scalar tails) on records shaped like Criteo's: many categorical features,
// no multi-hot. 13 features = three groups of four and a single; batches of 45 rows and 32-row blocks
// leave tails of every length. Every field of every row is checked against its code.
TEST(ShardSource, WideCategoricalRecordsDecodeEveryColumn) {
  constexpr int kCats = 13;
  ColumnSchema schema = ColumnSchema::parse({"label", "dense*3", "cat*13"});
  schema.hash_buckets = {100000};
  auto code = [](int64_t id, int f) { return (id * 7919 + f * 104729) % 99991; };
  TempDir dir;
  const std::vector<int64_t> sizes = {333, 41, 200};
  int64_t first = 0;
  for (size_t s = 0; s < sizes.size(); ++s) {
    const int64_t n = sizes[s];
    Batch b;
    b.labels = Tensor::empty({n}, DType::kF32);
    b.dense = Tensor::empty({n, 3}, DType::kF32);
    std::vector<int64_t> iota(static_cast<size_t>(n) + 1);
    std::iota(iota.begin(), iota.end(), 0);
    for (int f = 0; f < kCats; ++f) {
      std::vector<int64_t> v;
      for (int64_t i = 0; i < n; ++i) v.push_back(code(first + i, f));
      b.indices.push_back(Tensor::from_vector(v, {n}));
      b.offsets.push_back(Tensor::from_vector(iota, {n + 1}));
    }
    for (int64_t i = 0; i < n; ++i) {
      const int64_t id = first + i;
      b.labels.data<float>()[i] = static_cast<float>(id % 2);
      for (int d = 0; d < 3; ++d) b.dense.data<float>()[3 * i + d] = static_cast<float>(id) + 0.5f * static_cast<float>(d);
    }
    write_shard(dir / ("part-0000" + std::to_string(s) + ".rfshard"), schema, b, 32);
    first += n;
  }
  read_every_way(schema, dir.path, 45, 574, [&](const Batch& b, int64_t i, int64_t id) {
    ASSERT_EQ(b.num_sparse(), kCats);
    EXPECT_EQ(b.labels.data<float>()[i], static_cast<float>(id % 2)) << "row " << id;
    for (int k = 1; k < 3; ++k)
      EXPECT_EQ(b.dense.data<float>()[3 * i + k], static_cast<float>(id) + 0.5f * static_cast<float>(k));
    for (int f = 0; f < kCats; ++f) {
      ASSERT_EQ(b.indices[f].numel(), b.size());
      EXPECT_EQ(b.indices[f].data<int64_t>()[i], code(id, f)) << "row " << id << " feature " << f;
      EXPECT_EQ(b.offsets[f].data<int64_t>()[i], i);
    }
  });
}

// A multi-hot feature ahead of the categorical ones, with a different bag capacity per shard: the
// categorical features sit at other byte offsets in each shard's records (the decoder's per-row offset
// path), and records differ in size between shards.
TEST(ShardSource, ShardsWithDifferentBagCapacitiesDecodeEveryField) {
  ColumnSchema schema = ColumnSchema::parse({"label", "dense*1", "multi*1", "cat*5"});
  schema.hash_buckets = {5000};
  auto cat = [](int64_t id, int f) { return 1 + (id * 31 + f * 7) % 4999; };
  auto bag_len = [](int64_t id, int64_t cap) { return 1 + id % cap; };
  auto tok = [](int64_t id, int64_t j) { return 1 + (id * 13 + j * 5) % 4999; };
  TempDir dir;
  const std::vector<std::pair<int64_t, int64_t>> shards = {{150, 2}, {90, 5}, {61, 3}};  // rows, bag capacity
  int64_t first = 0;
  for (size_t s = 0; s < shards.size(); ++s) {
    const auto [n, cap] = shards[s];
    Batch b;
    b.labels = Tensor::empty({n}, DType::kF32);
    b.dense = Tensor::empty({n, 1}, DType::kF32);
    std::vector<int64_t> m, om{0}, iota(static_cast<size_t>(n) + 1);
    std::iota(iota.begin(), iota.end(), 0);
    for (int64_t i = 0; i < n; ++i) {
      const int64_t id = first + i;
      b.labels.data<float>()[i] = static_cast<float>(id % 2);
      b.dense.data<float>()[i] = static_cast<float>(id);
      for (int64_t j = 0; j < bag_len(id, cap); ++j) m.push_back(tok(id, j));
      om.push_back(static_cast<int64_t>(m.size()));
    }
    b.indices.push_back(Tensor::from_vector(m, {static_cast<int64_t>(m.size())}));
    b.offsets.push_back(Tensor::from_vector(om, {n + 1}));
    for (int f = 0; f < 5; ++f) {
      std::vector<int64_t> v;
      for (int64_t i = 0; i < n; ++i) v.push_back(cat(first + i, f));
      b.indices.push_back(Tensor::from_vector(v, {n}));
      b.offsets.push_back(Tensor::from_vector(iota, {n + 1}));
    }
    write_shard(dir / ("part-0000" + std::to_string(s) + ".rfshard"), schema, b, 16);
    first += n;
  }
  auto cap_of = [&](int64_t id) { return id < 150 ? 2 : id < 240 ? 5 : 3; };
  read_every_way(schema, dir.path, 37, 301, [&](const Batch& b, int64_t i, int64_t id) {
    const int64_t* om = b.offsets[0].data<int64_t>();
    EXPECT_EQ(b.labels.data<float>()[i], static_cast<float>(id % 2));
    ASSERT_EQ(om[i + 1] - om[i], bag_len(id, cap_of(id))) << "row " << id;
    for (int64_t j = 0; j < om[i + 1] - om[i]; ++j)
      EXPECT_EQ(b.indices[0].data<int64_t>()[om[i] + j], tok(id, j)) << "row " << id;
    for (int f = 0; f < 5; ++f)
      EXPECT_EQ(b.indices[static_cast<size_t>(f) + 1].data<int64_t>()[i], cat(id, f)) << "row " << id << " feature " << f;
  });
}

TEST(ShardSource, WaitTimeAndCorruptBlockReachTheConsumer) {
  TempDir dir;
  testing::write_coded_shards(dir.path, {256}, 32);
  std::string p = dir / "part-00000.rfshard";
  {
    std::fstream f(p, std::ios::in | std::ios::out | std::ios::binary);
    f.seekp(-3, std::ios::end);
    f.put('\x7f');
  }
  auto src = open_train_source(testing::coded_schema(), dir.path, 32, 0, 1, opts(false, 2));
  Batch b;
  for (int k = 0; k < 7; ++k) ASSERT_TRUE(src->next(b)) << k;
  try {
    src->next(b);
    FAIL() << "no error";
  } catch (const DataError& e) {
    EXPECT_NE(std::string(e.what()).find("block 7 (rows 224..255): checksum mismatch"), std::string::npos) << e.what();
  }
  EXPECT_GE(src->wait_seconds(), 0.0);
  EXPECT_NE(src->describe().find("2 workers"), std::string::npos);
}

std::string coded_tsv(int64_t n) {
  // The text form of the coded data: dense as integers (log-transformed by the reader), hex tokens.
  std::string s;
  for (int64_t i = 0; i < n; ++i) s += std::to_string(i % 2) + "\t" + std::to_string(i) + "\t1\tab\tcd\t1,2\n";
  return s;
}

TEST(TsvSource, SplitsEachGlobalBatchAcrossRanksAndResumes) {
  TempDir dir;
  std::string p = dir / "data.tsv";
  std::ofstream(p) << coded_tsv(103);
  ColumnSchema schema = testing::coded_schema();
  std::vector<float> all;
  for (int world : {1, 2, 3}) {
    std::vector<float> seen;
    std::vector<std::unique_ptr<BatchSource>> ranks;
    for (int r = 0; r < world; ++r) ranks.push_back(open_train_source(schema, p, 10, r, world, opts(false, 1)));
    EXPECT_EQ(ranks[0]->batches_per_epoch(), -1);
    EXPECT_NE(ranks[0]->describe().find("tsv"), std::string::npos);
    int steps = 0;
    for (;;) {
      int got = 0;
      for (auto& r : ranks) {
        Batch b;
        if (!r->next(b)) continue;
        ++got;
        for (int64_t i = 0; i < b.size(); ++i) seen.push_back(b.dense.data<float>()[2 * i]);
      }
      if (!got) break;
      EXPECT_EQ(got, world);
      ++steps;
    }
    EXPECT_EQ(steps, 11);
    std::sort(seen.begin(), seen.end());
    if (world == 1) all = seen;
    EXPECT_EQ(seen, all);
    EXPECT_EQ(seen.size(), 103u);
  }
  // Resume after 4 batches gives the same rows as reading on.
  auto a = open_train_source(schema, p, 10, 1, 2, opts(false, 1));
  Batch b;
  for (int k = 0; k < 4; ++k) ASSERT_TRUE(a->next(b));
  LoaderPosition pos = a->position();
  EXPECT_EQ(pos.rows, 20);
  ASSERT_TRUE(a->next(b));
  std::vector<float> want(b.dense.data<float>(), b.dense.data<float>() + b.dense.numel());
  auto c = open_train_source(schema, p, 10, 1, 2, opts(false, 0));
  c->seek(pos);
  ASSERT_TRUE(c->next(b));
  EXPECT_EQ(std::vector<float>(b.dense.data<float>(), b.dense.data<float>() + b.dense.numel()), want);
}

TEST(TsvSource, BadRowErrorsAndSkips) {
  TempDir dir;
  std::string p = dir / "bad.tsv";
  std::ofstream(p) << coded_tsv(5) << "1\tx\t1\tab\tcd\t1\n" << coded_tsv(3);
  ColumnSchema schema = testing::coded_schema();
  auto src = open_train_source(schema, p, 100, 0, 1, opts(false, 1));
  Batch b;
  try {
    src->next(b);
    FAIL() << "no error";
  } catch (const DataError& e) {
    EXPECT_NE(std::string(e.what()).find(p + ":6: field 2 (dense 1): expected a number, got 'x'"), std::string::npos)
        << e.what();
  }
  LoaderOptions o = opts(false, 1);
  o.skip_bad_rows = true;
  auto skip = open_train_source(schema, p, 100, 0, 1, o);
  ASSERT_TRUE(skip->next(b));
  EXPECT_EQ(b.size(), 8);
}

}  // namespace
}  // namespace rf::data
