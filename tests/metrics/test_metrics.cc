// AUC against hand-worked cases (ties included) and an O(n^2) pair count, log loss against the naive
// formula, the streaming accumulator against one-shot calls, and AUC's speed on 1M samples.
#include <gtest/gtest.h>

#include <chrono>
#include <cmath>
#include <random>

#include "src/metrics/binary_metrics.h"

namespace rf {
namespace {

double brute_auc(const std::vector<float>& s, const std::vector<float>& y) {
  double wins = 0, pos = 0, neg = 0;
  for (size_t i = 0; i < s.size(); ++i) (y[i] > 0.5f ? pos : neg) += 1;
  for (size_t i = 0; i < s.size(); ++i)
    for (size_t j = 0; j < s.size(); ++j)
      if (y[i] > 0.5f && y[j] <= 0.5f) wins += s[i] > s[j] ? 1.0 : (s[i] == s[j] ? 0.5 : 0.0);
  return wins / (pos * neg);
}

TEST(RocAuc, KnownCases) {
  // sklearn.metrics.roc_auc_score([0, 0, 1, 1], [0.1, 0.4, 0.35, 0.8]) == 0.75
  std::vector<float> s = {0.1f, 0.4f, 0.35f, 0.8f}, y = {0, 0, 1, 1};
  EXPECT_DOUBLE_EQ(roc_auc(s.data(), y.data(), 4), 0.75);
  // All scores tied: 0.5.
  s = {0.5f, 0.5f, 0.5f, 0.5f};
  y = {0, 1, 0, 1};
  EXPECT_DOUBLE_EQ(roc_auc(s.data(), y.data(), 4), 0.5);
  // A tie across classes counts half: (0.5 + 1) / 2.
  s = {1, 1, 2};
  y = {0, 1, 1};
  EXPECT_DOUBLE_EQ(roc_auc(s.data(), y.data(), 3), 0.75);
  // Perfectly inverted.
  s = {3, 2, 1};
  y = {0, 1, 1};
  EXPECT_DOUBLE_EQ(roc_auc(s.data(), y.data(), 3), 0.0);
}

TEST(RocAuc, UndefinedIsNaN) {
  std::vector<float> s = {0.1f, 0.9f}, ones = {1, 1}, zeros = {0, 0};
  EXPECT_TRUE(std::isnan(roc_auc(s.data(), ones.data(), 2)));
  EXPECT_TRUE(std::isnan(roc_auc(s.data(), zeros.data(), 2)));
  EXPECT_TRUE(std::isnan(roc_auc(nullptr, nullptr, 0)));
  std::vector<float> bad = {NAN, 0.5f}, y = {0, 1};
  EXPECT_TRUE(std::isnan(roc_auc(bad.data(), y.data(), 2)));
}

TEST(RocAuc, MatchesPairCountWithManyTies) {
  std::mt19937 rng(1);
  std::normal_distribution<float> n(0, 1);
  std::vector<float> s(3000), y(3000);
  for (size_t i = 0; i < s.size(); ++i) {
    y[i] = rng() % 4 == 0 ? 1.0f : 0.0f;
    s[i] = std::round((n(rng) + y[i]) * 4.0f) / 4.0f;  // coarse: lots of ties
  }
  EXPECT_NEAR(roc_auc(s.data(), y.data(), s.size()), brute_auc(s, y), 1e-12);  // both exact sums
}

TEST(RocAuc, MillionSamplesFast) {
  std::mt19937 rng(2);
  std::normal_distribution<float> n(0, 1);
  const size_t count = 1'000'000;
  std::vector<float> s(count), y(count);
  for (size_t i = 0; i < count; ++i) {
    y[i] = rng() % 5 == 0 ? 1.0f : 0.0f;
    s[i] = n(rng) + 0.5f * y[i];
  }
  auto t0 = std::chrono::steady_clock::now();
  double auc = roc_auc(s.data(), y.data(), count);
  double sec = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  std::printf("roc_auc on 1M samples: %.3f s (auc %.4f)\n", sec, auc);
  EXPECT_GT(auc, 0.6);
  EXPECT_LT(sec, 1.0);
}

TEST(LogLoss, FromLogitsMatchesNaiveAndIsStable) {
  std::vector<float> x = {0.0f, 2.0f, -3.0f, 0.5f}, y = {1, 0, 0, 1};
  double want = 0;
  for (size_t i = 0; i < x.size(); ++i) {
    double p = 1.0 / (1.0 + std::exp(-static_cast<double>(x[i])));
    want -= y[i] * std::log(p) + (1 - y[i]) * std::log(1 - p);
  }
  EXPECT_NEAR(logloss_from_logits(x.data(), y.data(), 4), want / 4, 1e-12);
  std::vector<float> big = {100.0f, -100.0f}, wrong = {0, 1};
  EXPECT_NEAR(logloss_from_logits(big.data(), wrong.data(), 2), 100.0, 1e-9);
}

TEST(LogLoss, FromProbabilitiesClips) {
  std::vector<float> p = {0.0f, 1.0f, 0.25f}, y = {1, 0, 1};
  double want = (-std::log(1e-7) * 2 - std::log(0.25)) / 3;
  EXPECT_NEAR(logloss(p.data(), y.data(), 3), want, 1e-9);
}

TEST(Accuracy, AtHalf) {
  std::vector<float> x = {1.0f, -1.0f, 0.2f, -0.1f}, y = {1, 0, 0, 0};
  EXPECT_DOUBLE_EQ(accuracy_from_logits(x.data(), y.data(), 4), 0.75);
}

TEST(BinaryMetrics, StreamingAndMergeMatchOneShot) {
  std::mt19937 rng(3);
  std::normal_distribution<float> n(0, 1);
  std::vector<float> s(1000), y(1000);
  for (size_t i = 0; i < s.size(); ++i) {
    y[i] = rng() % 3 == 0 ? 1.0f : 0.0f;
    s[i] = n(rng) + y[i];
  }
  BinaryMetrics a, b;
  a.add(s.data(), y.data(), 300);
  b.add(s.data() + 300, y.data() + 300, 200);
  b.add(s.data() + 500, y.data() + 500, 500);
  a.merge(b);
  EXPECT_EQ(a.count(), 1000u);
  EXPECT_DOUBLE_EQ(a.auc(), roc_auc(s.data(), y.data(), 1000));
  EXPECT_NEAR(a.logloss(), logloss_from_logits(s.data(), y.data(), 1000), 1e-12);
  EXPECT_DOUBLE_EQ(a.accuracy(), accuracy_from_logits(s.data(), y.data(), 1000));
  EXPECT_EQ(a.scores().size(), 1000u);
  a.clear();
  EXPECT_EQ(a.count(), 0u);
  EXPECT_TRUE(std::isnan(a.auc()));
  EXPECT_TRUE(std::isnan(a.logloss()));
}

}  // namespace
}  // namespace rf
