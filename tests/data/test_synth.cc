// Synthetic generator: determinism, planted AUC and positive rate, the reader reads it back; exact AUC.
#include <cmath>

#include <gtest/gtest.h>

#include "dataloader/synth.h"
#include "dataloader/tsv_reader.h"
#include "tests/data/test_util.h"

namespace rf::data {
namespace {

using testing::TempFile;
using testing::read_bytes;

SynthSpec small_spec(uint64_t seed) {
  SynthSpec s;
  s.rows_train = 20000;
  s.rows_test = 5000;
  s.seed = seed;
  return s;
}

TEST(ExactAuc, KnownValuesAndTies) {
  EXPECT_DOUBLE_EQ(exact_auc({0.1, 0.2, 0.3, 0.4}, {0, 0, 1, 1}), 1.0);
  EXPECT_DOUBLE_EQ(exact_auc({0.4, 0.3, 0.2, 0.1}, {0, 0, 1, 1}), 0.0);
  EXPECT_DOUBLE_EQ(exact_auc({0.5, 0.5, 0.5, 0.5}, {0, 1, 0, 1}), 0.5);
  // Pairs (pos, neg): (0.8 > 0.3), (0.8 > 0.5), (0.5 = 0.5 -> 1/2), (0.5 > 0.3): 3.5 of 4.
  EXPECT_DOUBLE_EQ(exact_auc({0.3, 0.8, 0.5, 0.5}, {0, 1, 1, 0}), 3.5 / 4.0);
  EXPECT_TRUE(std::isnan(exact_auc({0.1, 0.2}, {1, 1})));
}

TEST(Synth, DeterministicAndReadsBack) {
  TempFile a_tr("a_train.tsv"), a_te("a_test.tsv"), b_tr("b_train.tsv"), b_te("b_test.tsv"),
      c_tr("c_train.tsv"), c_te("c_test.tsv");
  SynthResult ra = synth_write(small_spec(7), a_tr.path, a_te.path);
  SynthResult rb = synth_write(small_spec(7), b_tr.path, b_te.path);
  SynthResult rc = synth_write(small_spec(8), c_tr.path, c_te.path);
  const std::string a_train = read_bytes(a_tr.path);
  EXPECT_EQ(a_train, read_bytes(b_tr.path));
  EXPECT_EQ(read_bytes(a_te.path), read_bytes(b_te.path));
  EXPECT_NE(a_train, read_bytes(c_tr.path));
  EXPECT_EQ(ra.planted_auc_test, rb.planted_auc_test);
  EXPECT_NE(ra.planted_auc_test, rc.planted_auc_test);

  for (const SynthResult& r : {ra, rc}) {
    EXPECT_GT(r.planted_auc_test, 0.74);
    EXPECT_LT(r.planted_auc_test, 0.83);
    EXPECT_GT(r.positive_rate_train, 0.22);
    EXPECT_LT(r.positive_rate_train, 0.33);
    EXPECT_EQ(r.cardinalities.size(), 26u);
    EXPECT_EQ(r.informative.size(), 13u);
  }

  // The reader accepts every row, with the label rate the generator reported, and empties do occur.
  ReaderOptions o;
  o.skip_bad_rows = false;
  TsvReader reader(ColumnSchema::criteo(), {a_tr.path, a_te.path}, o);
  Batch b;
  int64_t rows = 0, empty_cats = 0;
  double pos = 0;
  while (reader.next(b, 8192)) {
    rows += b.size();
    for (float y : b.labels.to_vector<float>()) pos += y;
    for (int f = 0; f < 26; ++f)
      for (int64_t v : b.indices[f].to_vector<int64_t>()) empty_cats += v == 0;
  }
  EXPECT_EQ(rows, 25000);
  EXPECT_EQ(reader.bad_rows(), 0);
  EXPECT_NEAR(pos, ra.positive_rate_train * 20000 + ra.positive_rate_test * 5000, 0.5);
  EXPECT_GT(empty_cats, 0);
}

TEST(Synth, RejectsBadSpec) {
  TempFile tr("tr.tsv"), te("te.tsv");
  SynthSpec s = small_spec(1);
  s.cardinalities = {10, 20};
  EXPECT_THROW(synth_write(s, tr.path, te.path), ConfigError);
  s = small_spec(1);
  s.positive_rate = 1.5;
  EXPECT_THROW(synth_write(s, tr.path, te.path), ConfigError);
}

}  // namespace
}  // namespace rf::data
