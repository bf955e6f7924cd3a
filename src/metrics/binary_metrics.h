// Exact binary-classification metrics: ROC AUC by ranks (Mann-Whitney U with averaged ties, the value
// sklearn.metrics.roc_auc_score gives), log loss from logits or probabilities, accuracy at 0.5, and a
// streaming accumulator that keeps every score so the AUC stays exact.
#pragma once

#include <cstddef>
#include <vector>

namespace rf {

// A label counts as positive when > 0.5 (labels are 0/1; soft labels only enter the log loss).
// Returns NaN when all labels are of one class (sklearn raises ValueError there), when n == 0 or
// when a score is NaN.
// Ties in score share their averaged rank, i.e. a positive/negative pair with equal scores counts 1/2.
double roc_auc(const float* scores, const float* labels, size_t n);

// Mean binary cross-entropy from logits x: max(x, 0) - x * y + log1p(exp(-|x|)), in double; no
// clipping is needed. NaN for n == 0.
double logloss_from_logits(const float* logits, const float* labels, size_t n);
// Mean binary cross-entropy from probabilities, each clipped to [eps, 1 - eps] first.
double logloss(const float* probs, const float* labels, size_t n, double eps = 1e-7);
// Fraction of samples where (logit > 0) == (label > 0.5), i.e. sigmoid(logit) > 0.5.
double accuracy_from_logits(const float* logits, const float* labels, size_t n);

class BinaryMetrics {
 public:
  // logits [n], labels [n]. Scores are kept as logits; AUC is invariant to the sigmoid, and logits do
  // not collapse to 1.0f the way large probabilities do.
  void add(const float* logits, const float* labels, size_t n);
  void merge(const BinaryMetrics& other);
  void clear();

  double auc() const;       // exact; NaN with one class only. Sorts a copy: O(n log n).
  double logloss() const;   // mean BCE over everything added; NaN when empty
  double accuracy() const;  // at probability 0.5
  size_t count() const { return scores_.size(); }
  size_t positives() const { return positives_; }

  std::vector<float>& scores() { return scores_; }
  std::vector<float>& labels() { return labels_; }
  const std::vector<float>& scores() const { return scores_; }
  const std::vector<float>& labels() const { return labels_; }

 private:
  std::vector<float> scores_;  // [count] logits
  std::vector<float> labels_;  // [count]
  double loss_sum_ = 0.0;
  size_t correct_ = 0;
  size_t positives_ = 0;
};

}  // namespace rf
