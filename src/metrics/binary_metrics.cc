// Metric arithmetic: sums in double, AUC from one sort of (score, label) pairs.
#include "src/metrics/binary_metrics.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <utility>

namespace rf {
namespace {

inline bool is_pos(float y) { return y > 0.5f; }

inline double bce_logit(float logit, float label) {
  const double x = logit, y = label;
  return std::max(x, 0.0) - x * y + std::log1p(std::exp(-std::fabs(x)));
}

}  // namespace

double roc_auc(const float* scores, const float* labels, size_t n) {
  // Sort scores with the label packed alongside; then walk tie groups in ascending score. A positive
  // in a group beats every negative below the group and half of the negatives inside it. Counts are
  // integers (or halves) far below 2^53, so the numerator is exact in double.
  std::vector<std::pair<float, bool>> v(n);
  size_t pos = 0;
  for (size_t i = 0; i < n; ++i) {
    if (std::isnan(scores[i])) return std::numeric_limits<double>::quiet_NaN();  // no order to rank by
    v[i] = {scores[i], is_pos(labels[i])};
    pos += v[i].second;
  }
  const size_t neg = n - pos;
  if (pos == 0 || neg == 0) return std::numeric_limits<double>::quiet_NaN();
  std::sort(v.begin(), v.end(), [](const auto& a, const auto& b) { return a.first < b.first; });
  double wins = 0.0;
  double neg_below = 0.0;
  for (size_t i = 0; i < n;) {
    size_t j = i;
    double p = 0.0, q = 0.0;
    while (j < n && v[j].first == v[i].first) {
      (v[j].second ? p : q) += 1.0;
      ++j;
    }
    wins += p * (neg_below + 0.5 * q);
    neg_below += q;
    i = j;
  }
  return wins / (static_cast<double>(pos) * static_cast<double>(neg));
}

double logloss_from_logits(const float* logits, const float* labels, size_t n) {
  if (n == 0) return std::numeric_limits<double>::quiet_NaN();
  double s = 0.0;
  for (size_t i = 0; i < n; ++i) s += bce_logit(logits[i], labels[i]);
  return s / static_cast<double>(n);
}

double logloss(const float* probs, const float* labels, size_t n, double eps) {
  if (n == 0) return std::numeric_limits<double>::quiet_NaN();
  double s = 0.0;
  for (size_t i = 0; i < n; ++i) {
    const double p = std::clamp(static_cast<double>(probs[i]), eps, 1.0 - eps);
    const double y = labels[i];
    s -= y * std::log(p) + (1.0 - y) * std::log(1.0 - p);
  }
  return s / static_cast<double>(n);
}

double accuracy_from_logits(const float* logits, const float* labels, size_t n) {
  if (n == 0) return std::numeric_limits<double>::quiet_NaN();
  size_t c = 0;
  for (size_t i = 0; i < n; ++i) c += (logits[i] > 0.0f) == is_pos(labels[i]);
  return static_cast<double>(c) / static_cast<double>(n);
}

void BinaryMetrics::add(const float* logits, const float* labels, size_t n) {
  scores_.insert(scores_.end(), logits, logits + n);
  labels_.insert(labels_.end(), labels, labels + n);
  for (size_t i = 0; i < n; ++i) {
    loss_sum_ += bce_logit(logits[i], labels[i]);
    correct_ += (logits[i] > 0.0f) == is_pos(labels[i]);
    positives_ += is_pos(labels[i]);
  }
}

void BinaryMetrics::merge(const BinaryMetrics& o) {
  scores_.insert(scores_.end(), o.scores_.begin(), o.scores_.end());
  labels_.insert(labels_.end(), o.labels_.begin(), o.labels_.end());
  loss_sum_ += o.loss_sum_;
  correct_ += o.correct_;
  positives_ += o.positives_;
}

void BinaryMetrics::clear() { *this = BinaryMetrics(); }

double BinaryMetrics::auc() const { return roc_auc(scores_.data(), labels_.data(), scores_.size()); }

double BinaryMetrics::logloss() const {
  if (scores_.empty()) return std::numeric_limits<double>::quiet_NaN();
  return loss_sum_ / static_cast<double>(scores_.size());
}

double BinaryMetrics::accuracy() const {
  if (scores_.empty()) return std::numeric_limits<double>::quiet_NaN();
  return static_cast<double>(correct_) / static_cast<double>(scores_.size());
}

}  // namespace rf
