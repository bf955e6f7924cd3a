// TSV reader: values, batching, every bad-row message, skipping, gzip, and the real ml-100k files.
#include <zlib.h>

#include <chrono>
#include <cmath>
#include <filesystem>

#include <gtest/gtest.h>

#include "dataloader/hash.h"
#include "dataloader/tsv_reader.h"
#include "src/core/error.h"
#include "tests/data/test_util.h"

namespace rf::data {
namespace {

using testing::TempFile;

// A well-formed Criteo row: label, dense 0..12 (+ shift), cat tokens 0000000j.
std::string criteo_row(int label, int shift = 0) {
  std::string s = std::to_string(label);
  for (int k = 0; k < 13; ++k) {
    s += '\t';
    s += std::to_string(k + shift);
  }
  char tok[16];
  for (int j = 0; j < 26; ++j) {
    std::snprintf(tok, sizeof tok, "%08x", j + shift);
    s += std::string("\t") + tok;
  }
  return s;
}

// Replaces 0-based field `field` of a tab-separated row.
std::string with_field(const std::string& row, int field, const std::string& value) {
  size_t b = 0;
  for (int i = 0; i < field; ++i) b = row.find('\t', b) + 1;
  size_t e = row.find('\t', b);
  return row.substr(0, b) + value + (e == std::string::npos ? "" : row.substr(e));
}

std::string first_error(const ColumnSchema& schema, const std::string& path) {
  try {
    TsvReader reader(schema, {path});
    Batch b;
    while (reader.next(b, 3)) {
    }
  } catch (const DataError& e) {
    return e.what();
  }
  return "no error";
}

TEST(TsvReader, CriteoValues) {
  TempFile f("a.tsv", criteo_row(1) + "\n" + criteo_row(0, 5) + "\n");
  ColumnSchema s = ColumnSchema::criteo();
  s.hash_buckets = {1000};
  TsvReader reader(s, {f.path});
  Batch b;
  ASSERT_TRUE(reader.next(b, 8));
  ASSERT_EQ(b.size(), 2);
  EXPECT_EQ(b.labels.to_vector<float>(), std::vector<float>({1.0f, 0.0f}));
  check_shape(b.dense, {2, 13}, "dense");
  const float* d = b.dense.data<float>();
  for (int k = 0; k < 13; ++k) {
    EXPECT_FLOAT_EQ(d[k], static_cast<float>(std::log1p(static_cast<double>(k))));
    EXPECT_FLOAT_EQ(d[13 + k], static_cast<float>(std::log1p(static_cast<double>(k + 5))));
  }
  ASSERT_EQ(b.num_sparse(), 26);
  for (int j = 0; j < 26; ++j) {
    EXPECT_EQ(b.offsets[j].to_vector<int64_t>(), std::vector<int64_t>({0, 1, 2}));
    EXPECT_EQ(b.indices[j].to_vector<int64_t>(),
              std::vector<int64_t>({hex_value_row(j, 1000), hex_value_row(j + 5, 1000)}));
  }
  EXPECT_FALSE(reader.next(b, 8));
  EXPECT_EQ(b.size(), 2);  // untouched at the end
  EXPECT_EQ(reader.rows_read(), 2);
  EXPECT_EQ(reader.bad_rows(), 0);
  EXPECT_EQ(reader.bad_rows_summary(), "");
}

TEST(TsvReader, DenseTransform) {
  EXPECT_EQ(dense_transform(-3), 0.0f);
  EXPECT_EQ(dense_transform(0), 0.0f);
  EXPECT_FLOAT_EQ(dense_transform(1), std::log(2.0f));
  const std::vector<std::pair<std::string, double>> cases = {
      {"", 0.0}, {"-5", 0.0}, {"-0.5", 0.0}, {"0", 0.0}, {"1", std::log1p(1.0)}, {"3.5", std::log1p(3.5)},
      {"1e2", std::log1p(100.0)}, {"4095", std::log1p(4095.0)}, {"4096", std::log1p(4096.0)},
      {"123456789012", std::log1p(123456789012.0)}, {"0.25", std::log1p(0.25)}};
  std::string text;
  for (auto& [v, want] : cases) text += "1\t" + v + "\n";
  TempFile f("d.tsv", text);
  Batch b = load_all(ColumnSchema::parse({"label", "dense"}), {f.path});
  ASSERT_EQ(b.size(), static_cast<int64_t>(cases.size()));
  for (size_t i = 0; i < cases.size(); ++i)
    EXPECT_FLOAT_EQ(b.dense.data<float>()[i], static_cast<float>(cases[i].second)) << "'" << cases[i].first << "'";
  for (const char* bad : {"x1", "nan", "inf", "1.5x", "1,5", " 3", "0x10"}) {
    TempFile g("bad.tsv", std::string("1\t") + bad + "\n");
    EXPECT_EQ(first_error(ColumnSchema::parse({"label", "dense"}), g.path),
              g.path + ":1: field 2 (dense 1): expected a number, got '" + bad + "'");
  }
}

TEST(TsvReader, BadRowMessages) {
  const ColumnSchema s = ColumnSchema::criteo();
  const std::string good = criteo_row(1);
  {
    std::string short_row = good.substr(0, good.rfind('\t'));
    TempFile f("count.tsv", good + "\n" + short_row + "\n");
    EXPECT_EQ(first_error(s, f.path), f.path + ":2: expected 40 tab-separated fields, got 39");
  }
  {
    TempFile f("dense.tsv", good + "\n" + good + "\n" + with_field(good, 2, "x1") + "\n");
    EXPECT_EQ(first_error(s, f.path), f.path + ":3: field 3 (dense 2): expected a number, got 'x1'");
  }
  {
    TempFile f("label.tsv", with_field(good, 0, "2") + "\n");
    EXPECT_EQ(first_error(s, f.path), f.path + ":1: label: expected 0 or 1, got '2'");
  }
  {
    TempFile f("label_empty.tsv", with_field(good, 0, "") + "\n");
    EXPECT_EQ(first_error(s, f.path), f.path + ":1: label: expected 0 or 1, got ''");
  }
  {
    TempFile f("cat.tsv", with_field(good, 14, "68fd1e6z") + "\n");
    EXPECT_EQ(first_error(s, f.path),
              f.path + ":1: field 15 (cat 1): expected a hex token of at most 8 digits, got '68fd1e6z'");
  }
  {
    TempFile f("cat_long.tsv", with_field(good, 39, "123456789") + "\n");
    EXPECT_EQ(first_error(s, f.path),
              f.path + ":1: field 40 (cat 26): expected a hex token of at most 8 digits, got '123456789'");
  }
  {
    TempFile f("blank.tsv", good + "\n\n" + good + "\n");
    EXPECT_EQ(first_error(s, f.path), f.path + ":2: expected 40 tab-separated fields, got 1");
  }
  {
    ColumnSchema m = ColumnSchema::parse({"label", "cat:user", "multi:genres"});
    TempFile f("multi.tsv", "1\ta\tab,cd\n0\tb\tab,,cd\n");
    EXPECT_EQ(first_error(m, f.path),
              f.path + ":2: field 3 (genres): expected a hex token of at most 8 digits, got '' (element 2)");
  }
  {
    std::string long_value(100, 'q');
    TempFile f("long.tsv", "1\t" + long_value + "\n");
    EXPECT_EQ(first_error(ColumnSchema::parse({"label", "dense"}), f.path),
              f.path + ":1: field 2 (dense 1): expected a number, got '" + std::string(40, 'q') + "...'");
  }
}

TEST(TsvReader, SkipBadRowsCountsAndRollsBack) {
  const std::string good = criteo_row(1);
  std::string text;
  int want_good = 0;
  for (int i = 0; i < 20; ++i) {
    if (i % 5 == 2) text += with_field(criteo_row(0, i), 20 + i % 3, "zz") + "\n";  // bad cat mid-row
    else if (i % 5 == 4) text += with_field(criteo_row(0, i), 5, "?") + "\n";       // bad dense
    else text += criteo_row(i % 2, i) + "\n", ++want_good;
  }
  TempFile f("skip.tsv", text);
  ColumnSchema s = ColumnSchema::criteo();
  ReaderOptions o;
  o.skip_bad_rows = true;
  TsvReader reader(s, {f.path}, o);
  Batch b;
  int64_t rows = 0;
  std::vector<int64_t> shifts;
  while (reader.next(b, 4)) {
    rows += b.size();
    // Every surviving row's cat 1 token is its shift: nothing of a rolled-back row leaks in.
    auto idx = b.indices[0].to_vector<int64_t>();
    auto off = b.offsets[0].to_vector<int64_t>();
    ASSERT_EQ(static_cast<int64_t>(idx.size()), b.size());
    ASSERT_EQ(off.back(), b.size());
    for (int64_t v : idx) shifts.push_back(v);
  }
  EXPECT_EQ(rows, want_good);
  EXPECT_EQ(reader.rows_read(), want_good);
  EXPECT_EQ(reader.bad_rows(), 20 - want_good);
  std::vector<int64_t> want;
  for (int i = 0; i < 20; ++i)
    if (i % 5 != 2 && i % 5 != 4) want.push_back(hex_value_row(static_cast<uint64_t>(i), s.buckets(0)));
  EXPECT_EQ(shifts, want);
  EXPECT_EQ(reader.bad_rows_summary(),
            "skipped 8 bad rows, first at " + f.path +
                ":3: field 23 (cat 9): expected a hex token of at most 8 digits, got 'zz'");
}

TEST(TsvReader, MultiHotAndEmptyValues) {
  ColumnSchema s = ColumnSchema::parse({"label", "dense", "cat", "multi"});
  s.hash_buckets = {50};
  // Row 3 has empty dense, cat and bag, and no final newline; row 2 ends in CRLF.
  TempFile f("m.tsv", "1\t3\t00ff\t01,02,03\n0\t-1\tABC\t07\r\n1\t\t\t");
  TsvReader reader(s, {f.path});
  Batch b;
  ASSERT_TRUE(reader.next(b, 100));
  ASSERT_EQ(b.size(), 3);
  EXPECT_EQ(b.labels.to_vector<float>(), std::vector<float>({1, 0, 1}));
  EXPECT_EQ(b.dense.to_vector<float>(), std::vector<float>({std::log(4.0f), 0.0f, 0.0f}));
  auto h = [](uint64_t v) { return hex_value_row(v, 50); };
  EXPECT_EQ(b.indices[0].to_vector<int64_t>(), std::vector<int64_t>({h(0xff), h(0xabc), 0}));
  EXPECT_EQ(b.offsets[0].to_vector<int64_t>(), std::vector<int64_t>({0, 1, 2, 3}));
  EXPECT_EQ(b.indices[1].to_vector<int64_t>(), std::vector<int64_t>({h(1), h(2), h(3), h(7), 0}));
  EXPECT_EQ(b.offsets[1].to_vector<int64_t>(), std::vector<int64_t>({0, 3, 4, 5}));

  // Another separator and string tokens.
  ColumnSchema t = ColumnSchema::parse({"label", "multi"});
  t.encoding = TokenEncoding::kString;
  t.multi_hot_separator = '|';
  t.hash_buckets = {1000};
  TempFile g("s.tsv", "1\tcomedy|drama\n");
  Batch c = load_all(t, {g.path});
  EXPECT_EQ(c.indices[0].to_vector<int64_t>(),
            std::vector<int64_t>({string_token_row("comedy", 1000), string_token_row("drama", 1000)}));
}

TEST(TsvReader, BatchingFilesResetAndMaxRows) {
  std::string a, c;
  for (int i = 0; i < 7; ++i) a += criteo_row(1, i) + "\n";
  for (int i = 7; i < 12; ++i) c += criteo_row(0, i) + "\n";
  TempFile fa("a.tsv", a), fc("c.tsv", c);
  ColumnSchema s = ColumnSchema::criteo();
  ReaderOptions small;
  small.block_bytes = 64;  // lines longer than a block: the buffer grows, lines span reads
  TsvReader reader(s, {fa.path, fc.path}, small);
  for (int pass = 0; pass < 2; ++pass) {
    std::vector<int64_t> sizes;
    std::vector<float> first_dense;
    Batch b;
    while (reader.next(b, 5)) {
      sizes.push_back(b.size());
      for (int64_t r = 0; r < b.size(); ++r) first_dense.push_back(b.dense.data<float>()[r * 13]);
    }
    EXPECT_EQ(sizes, std::vector<int64_t>({5, 5, 2}));
    ASSERT_EQ(first_dense.size(), 12u);
    for (int i = 0; i < 12; ++i) EXPECT_FLOAT_EQ(first_dense[i], std::log1p(static_cast<float>(i)));
    EXPECT_EQ(reader.rows_read(), 12);
    reader.reset();
  }
  ReaderOptions lim;
  lim.max_rows = 9;
  std::vector<Batch> bs = read_batches(s, {fa.path, fc.path}, 4, lim);
  ASSERT_EQ(bs.size(), 3u);
  EXPECT_EQ(bs[2].size(), 1);

  Batch all = load_all(s, {fa.path, fc.path});
  EXPECT_EQ(all.size(), 12);
  Batch mid = slice_batch(all, 3, 8);
  EXPECT_EQ(mid.size(), 5);
  EXPECT_EQ(mid.offsets[4].to_vector<int64_t>(), std::vector<int64_t>({0, 1, 2, 3, 4, 5}));
  EXPECT_EQ(mid.indices[4].data<int64_t>()[0], all.indices[4].data<int64_t>()[3]);
  EXPECT_FLOAT_EQ(mid.dense.data<float>()[0], all.dense.data<float>()[3 * 13]);
}

TEST(TsvReader, GzipAndMissingFile) {
  std::string text;
  for (int i = 0; i < 100; ++i) text += criteo_row(i % 3 == 0, i) + "\n";
  TempFile plain("p.tsv", text);
  std::string gz_path = testing::temp_path("p.tsv.gz");
  gzFile g = gzopen(gz_path.c_str(), "wb");
  ASSERT_NE(g, nullptr);
  ASSERT_EQ(gzwrite(g, text.data(), static_cast<unsigned>(text.size())), static_cast<int>(text.size()));
  gzclose(g);
  Batch a = load_all(ColumnSchema::criteo(), {plain.path});
  Batch b = load_all(ColumnSchema::criteo(), {gz_path});
  std::filesystem::remove(gz_path);
  ASSERT_EQ(b.size(), 100);
  EXPECT_EQ(a.labels.to_vector<float>(), b.labels.to_vector<float>());
  EXPECT_EQ(a.dense.to_vector<float>(), b.dense.to_vector<float>());
  EXPECT_EQ(a.indices[25].to_vector<int64_t>(), b.indices[25].to_vector<int64_t>());

  try {
    TsvReader r(ColumnSchema::criteo(), {"/nonexistent/x.tsv"});
    FAIL() << "no error";
  } catch (const DataError& e) {
    EXPECT_NE(std::string(e.what()).find("cannot open /nonexistent/x.tsv"), std::string::npos);
    EXPECT_EQ(e.exit_code(), 2);
  }
}

std::string shared_data() { return std::string(RF_SOURCE_DIR) + "/../shared/data"; }

TEST(TsvReader, MovieLens100k) {
  const std::string dir = shared_data() + "/ml-100k";
  if (!std::filesystem::exists(dir + "/ctr_train.tsv"))
    GTEST_SKIP() << "shared data not found at " << dir << " (see shared/data/README.md)";
  ColumnSchema s = ColumnSchema::parse({"label", "dense*6", "cat*6", "multi*1"});
  struct Split {
    const char* file;
    int64_t rows;
    double rate;
  };
  for (Split sp : {Split{"ctr_train.tsv", 80000, 0.551}, Split{"ctr_test.tsv", 20000, 0.565}}) {
    const std::string path = dir + "/" + sp.file;
    auto t0 = std::chrono::steady_clock::now();
    TsvReader reader(s, {path});
    Batch b;
    int64_t rows = 0;
    double pos = 0;
    int64_t genre_tokens = 0, empty_years = 0;
    while (reader.next(b, 4096)) {
      rows += b.size();
      for (float y : b.labels.to_vector<float>()) pos += y;
      genre_tokens += b.indices[6].numel();
      for (int64_t v : b.indices[5].to_vector<int64_t>()) empty_years += v == 0;
      for (int f = 0; f < 6; ++f) ASSERT_EQ(b.indices[f].numel(), b.size());
    }
    double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    EXPECT_EQ(rows, sp.rows) << sp.file;
    EXPECT_EQ(reader.bad_rows(), 0);
    EXPECT_NEAR(pos / static_cast<double>(rows), sp.rate, 0.001) << sp.file;
    EXPECT_GT(genre_tokens, rows);  // many movies have several genres
    std::printf("[ ml-100k ] %s: %lld rows, positive rate %.4f, %.2f genres/row, %lld empty years, "
                "%.0f rows/s\n", sp.file, static_cast<long long>(rows), pos / static_cast<double>(rows),
                static_cast<double>(genre_tokens) / static_cast<double>(rows), static_cast<long long>(empty_years),
                static_cast<double>(rows) / secs);
  }
  EXPECT_EQ(load_all(ColumnSchema::preset("ml-100k"), {dir + "/ctr_test.tsv"}).size(), 20000);
}

}  // namespace
}  // namespace rf::data
