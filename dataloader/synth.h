// Synthetic Criteo-format data with a planted model, the backend of `recforge synth`: label, 13 integer
// dense counts, 26 8-digit hex categorical tokens (Zipf-distributed), labels ~ Bernoulli(sigmoid(logit))
// of a planted logit that DLRM with hashed embeddings can learn (an effect per categorical value, and a
// linear effect on log(1 + x) per dense feature). Same spec and seed -> byte-identical files.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "dataloader/batch.h"

namespace rf::data {

struct SynthSpec {
  int64_t rows_train = 1000000;
  int64_t rows_test = 200000;
  int num_dense = 13;
  int num_cat = 26;
  // Cardinality of categorical feature j: cardinalities[j] when given (num_cat values), otherwise drawn
  // log-uniformly in [min_cardinality, max_cardinality] from the seed.
  std::vector<int64_t> cardinalities;
  int64_t min_cardinality = 1000;
  int64_t max_cardinality = 100000;
  double zipf_exponent = 1.1;         // P(value of rank r) ~ r^-s, r = 1..cardinality
  uint64_t seed = 1;
  double informative_fraction = 0.5;  // share of categorical features with planted per-value effects
  // Planted logit = bias + sum over informative categorical features of w_j[value]
  //               + sum over dense features of a_k * standardised log(1 + x_k).
  // Per-value weights are N(0, 1) draws, centred and scaled (under the Zipf law) so the logit's
  // standard deviation is logit_std, dense_share of its variance from the dense features.
  double logit_std = 1.25;  // planted test AUC ~0.78 with the other defaults
  double dense_share = 0.3;
  double positive_rate = 0.27;        // the bias is set for this rate
  double missing_rate = 0.02;         // each dense/categorical field is empty with this probability
};

struct SynthResult {
  int64_t rows_train = 0, rows_test = 0;
  double positive_rate_train = 0, positive_rate_test = 0;
  double planted_auc_train = 0, planted_auc_test = 0;  // AUC of the planted probabilities (the ceiling)
  double bias = 0;
  std::vector<int64_t> cardinalities;
  std::vector<int> informative;  // indices of the categorical features with planted effects
};

// Writes train_path and test_path (Criteo TSV, '\n'-terminated). Throws ConfigError for a bad spec
// and Error when a file cannot be written.
SynthResult synth_write(const SynthSpec& spec, const std::string& train_path, const std::string& test_path);

// Exact ROC AUC: the probability that a random positive scores above a random negative, ties counted
// one half (rank-based: average ranks over tied scores). labels are 0/1. Returns NaN when there are no
// positives or no negatives.
double exact_auc(const std::vector<double>& scores, const std::vector<uint8_t>& labels);

// A random in-memory batch for benchmarks, which time the step and not the data: labels 0/1, dense
// values in [0, 5) (the range of log(1 + count)), one uniform row per table per sample.
Batch random_batch(int64_t batch, int64_t num_dense, const std::vector<int64_t>& table_sizes, uint64_t seed);

}  // namespace rf::data
