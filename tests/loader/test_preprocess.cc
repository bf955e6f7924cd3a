// `preprocess`: shards hold exactly what the TSV reader parses (same rows, order, transform and
// hashing), splits go to their own directories, bad rows are named by input file and line across
// chunks, and the frequency threshold writes a vocabulary and remaps indices.
#include <filesystem>
#include <fstream>
#include <map>
#include <sstream>

#include <gtest/gtest.h>

#include "dataloader/batch_source.h"
#include "dataloader/shard_reader.h"
#include "dataloader/shard_writer.h"
#include "dataloader/tsv_reader.h"
#include "tests/loader/loader_util.h"

namespace rf::data {
namespace {

using testing::TempDir;

// Rows with varied dense values, hex tokens with repeats (for the threshold) and missing fields.
std::string text_rows(int64_t n, int64_t salt) {
  std::ostringstream s;
  for (int64_t i = 0; i < n; ++i) {
    int64_t v = i * 7 + salt;
    s << v % 2 << '\t';
    if (v % 5) s << v % 300;
    s << '\t' << v % 3 - 1 << '\t';
    if (v % 11) s << v % 4;
    s << '\t' << 100 + v % 97 << '\t';
    for (int64_t j = 0; j <= v % 4; ++j) s << (j ? "," : "") << v % 13 + j;
    s << '\n';
  }
  return s.str();
}

std::vector<float> floats(const Tensor& t) { return t.to_vector<float>(); }
std::vector<int64_t> ints(const Tensor& t) { return t.to_vector<int64_t>(); }

TEST(Preprocess, ShardsHoldWhatTheTsvReaderParses) {
  TempDir dir;
  std::string train = dir / "train.tsv", test = dir / "test.tsv";
  std::ofstream(train) << text_rows(500, 0);
  std::ofstream(test) << text_rows(77, 3);
  ColumnSchema schema = testing::coded_schema();
  PreprocessOptions o;
  o.shard_rows = 37;
  o.block_rows = 8;
  o.threads = 2;
  PreprocessSummary sum = preprocess(schema, {{"train", {train}}, {"test", {test}}}, dir / "out", o);
  ASSERT_EQ(sum.splits.size(), 2u);
  EXPECT_EQ(sum.splits[0].rows, 500);
  EXPECT_EQ(sum.splits[0].shards, 14);  // ceil(500 / 37)
  EXPECT_EQ(sum.splits[1].rows, 77);
  for (const auto& [name, path] : std::map<std::string, std::string>{{"train", train}, {"test", test}}) {
    Batch want = load_all(schema, {path});
    auto src = open_train_source(schema, dir / ("out/" + name), 1000, 0, 1, LoaderOptions{});
    Batch got;
    ASSERT_TRUE(src->next(got));
    EXPECT_EQ(floats(got.labels), floats(want.labels)) << name;
    EXPECT_EQ(floats(got.dense), floats(want.dense)) << name;
    for (int f = 0; f < 3; ++f) {
      EXPECT_EQ(ints(got.indices[f]), ints(want.indices[f])) << name << " feature " << f;
      EXPECT_EQ(ints(got.offsets[f]), ints(want.offsets[f])) << name << " feature " << f;
    }
  }
}

TEST(Preprocess, BadRowNamesTheInputLineAcrossChunks) {
  TempDir dir;
  std::string train = dir / "train.tsv";
  std::ofstream(train) << text_rows(100, 0) << "1\t2\t3\tzz\t5\t6\n" << text_rows(10, 0);
  ColumnSchema schema = testing::coded_schema();
  PreprocessOptions o;
  o.shard_rows = 30;
  o.threads = 2;
  try {
    preprocess(schema, {{"train", {train}}}, dir / "out", o);
    FAIL() << "no error";
  } catch (const DataError& e) {
    EXPECT_NE(std::string(e.what()).find(train + ":101: field 4 (cat 1): expected a hex token"), std::string::npos)
        << e.what();
  }
  o.skip_bad_rows = true;
  PreprocessSummary sum = preprocess(schema, {{"train", {train}}}, dir / "out", o);
  EXPECT_EQ(sum.splits[0].rows, 110);
  EXPECT_EQ(sum.splits[0].bad_rows, 1);
  EXPECT_NE(sum.splits[0].bad_rows_summary.find(train + ":101:"), std::string::npos) << sum.splits[0].bad_rows_summary;
}

TEST(Preprocess, FrequencyThresholdWritesVocabularyAndRemaps) {
  TempDir dir;
  std::string train = dir / "train.tsv", val = dir / "val.tsv";
  // cat 1 takes values 0..3 (v % 4; "" when v % 11 == 0), with "3" rare: only a few rows.
  std::string s;
  for (int i = 0; i < 60; ++i) {
    s += "1\t1\t1\t";
    s += i < 2 ? "3" : (i % 2 ? "1" : "2");
    s += i % 10 ? "\ta" : "\t";
    s += "\t5\n";
  }
  std::ofstream(train) << s;
  std::ofstream(val) << "0\t1\t1\t3\ta\t5\n0\t1\t1\t7\ta\t5\n0\t1\t1\t1\t\t5\n";
  ColumnSchema schema = testing::coded_schema();
  PreprocessOptions o;
  o.freq_threshold = 5;
  o.shard_rows = 16;
  o.threads = 2;
  PreprocessSummary sum = preprocess(schema, {{"train", {train}}, {"validation", {val}}}, dir / "out", o);
  // cat 1: "1" and "2" kept (29 each), "3" rare -> 3 rows; cat 2: "a" kept; multi: "5" kept.
  EXPECT_EQ(sum.table_rows, (std::vector<int64_t>{4, 3, 3}));
  EXPECT_TRUE(std::filesystem::exists(dir / "out/vocab.tsv"));
  ShardDataset d(dir / "out/validation", &schema);
  EXPECT_EQ(d.table_sizes(), sum.table_rows);
  auto src = open_train_source(schema, dir / "out/validation", 10, 0, 1, LoaderOptions{});
  Batch b;
  ASSERT_TRUE(src->next(b));
  std::vector<int64_t> cat1 = ints(b.indices[0]);
  EXPECT_EQ(cat1[0], 1);  // "3" is rare in train
  EXPECT_EQ(cat1[1], 1);  // "7" never seen
  EXPECT_GE(cat1[2], 2);  // "1" kept
  std::vector<int64_t> cat2 = ints(b.indices[1]);
  EXPECT_EQ(cat2, (std::vector<int64_t>{2, 2, 0}));  // missing stays 0
  std::ifstream vocab(dir / "out/vocab.tsv");
  std::string all((std::istreambuf_iterator<char>(vocab)), {});
  EXPECT_NE(all.find("0\tcat 1\t1\t-\t2\n"), std::string::npos) << all;
}

}  // namespace
}  // namespace rf::data
