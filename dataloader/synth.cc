// Synthetic data generator and exact AUC. One xoshiro256** stream drives everything in a fixed order,
// so the files depend only on the spec. Zipf draws use Vose alias tables (O(1) per draw).
#include "dataloader/synth.h"

#include <random>

#include <algorithm>
#include <charconv>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <limits>
#include <numeric>

#include "dataloader/hash.h"
#include "src/core/error.h"

namespace rf::data {

namespace {

class Rng {
 public:
  explicit Rng(uint64_t seed) {
    for (auto& w : s_) w = seed = splitmix64(seed);
  }
  uint64_t next() {
    const uint64_t result = rotl(s_[1] * 5, 7) * 9;
    const uint64_t t = s_[1] << 17;
    s_[2] ^= s_[0];
    s_[3] ^= s_[1];
    s_[1] ^= s_[2];
    s_[0] ^= s_[3];
    s_[2] ^= t;
    s_[3] = rotl(s_[3], 45);
    return result;
  }
  double uniform() { return static_cast<double>(next() >> 11) * 0x1.0p-53; }  // [0, 1)
  double normal() {  // Box-Muller, second value kept
    if (has_spare_) {
      has_spare_ = false;
      return spare_;
    }
    double u1 = 1.0 - uniform(), u2 = uniform();
    double r = std::sqrt(-2.0 * std::log(u1)), th = 2.0 * M_PI * u2;
    spare_ = r * std::sin(th);
    has_spare_ = true;
    return r * std::cos(th);
  }

 private:
  static uint64_t rotl(uint64_t x, int k) { return (x << k) | (x >> (64 - k)); }
  uint64_t s_[4];
  double spare_ = 0;
  bool has_spare_ = false;
};

// Vose alias table over ranks 0..n-1. Probability and alias share one 8-byte entry so a draw from a
// large table costs one cache miss, not two.
struct Alias {
  struct Entry {
    float prob;
    int32_t alias;
  };
  std::vector<Entry> table;
  void build(const std::vector<double>& p) {
    const size_t n = p.size();
    table.assign(n, Entry{1.0f, 0});
    std::vector<double> scaled(n);
    std::vector<int32_t> small, large;
    for (size_t i = 0; i < n; ++i) {
      scaled[i] = p[i] * static_cast<double>(n);
      (scaled[i] < 1.0 ? small : large).push_back(static_cast<int32_t>(i));
    }
    while (!small.empty() && !large.empty()) {
      int32_t s = small.back(), l = large.back();
      small.pop_back();
      table[s] = Entry{static_cast<float>(scaled[s]), l};
      scaled[l] = (scaled[l] + scaled[s]) - 1.0;
      if (scaled[l] < 1.0) {
        large.pop_back();
        small.push_back(l);
      }
    }
    for (int32_t i : small) table[i] = Entry{1.0f, i};
    for (int32_t i : large) table[i] = Entry{1.0f, i};
  }
  int32_t sample(uint64_t u) const {
    uint64_t i = ((u >> 32) * static_cast<uint64_t>(table.size())) >> 32;
    float f = static_cast<float>(u & 0xFFFFFFFFu) * 0x1.0p-32f;
    const Entry& e = table[i];
    return f < e.prob ? static_cast<int32_t>(i) : e.alias;
  }
};

struct Writer {
  std::FILE* f = nullptr;
  std::string path;
  std::vector<char> buf;
  size_t n = 0;
  explicit Writer(const std::string& p) : path(p), buf(1 << 22) {
    f = std::fopen(p.c_str(), "wb");
    if (!f) throw Error("cannot write " + p + ": " + std::strerror(errno));
  }
  ~Writer() {
    if (f) std::fclose(f);
  }
  void flush() {
    if (n && std::fwrite(buf.data(), 1, n, f) != n) throw Error("error writing " + path);
    n = 0;
  }
  char* reserve(size_t k) {
    if (n + k > buf.size()) flush();
    return buf.data() + n;
  }
  void close() {
    flush();
    if (std::fclose(f) != 0) throw Error("error closing " + path);
    f = nullptr;
  }
};

double sigmoid(double x) { return 1.0 / (1.0 + std::exp(-x)); }

}  // namespace

double exact_auc(const std::vector<double>& scores, const std::vector<uint8_t>& labels) {
  RF_CHECK(scores.size() == labels.size(), "exact_auc: ", scores.size(), " scores, ", labels.size(), " labels");
  const size_t n = scores.size();
  std::vector<uint32_t> order(n);
  std::iota(order.begin(), order.end(), 0u);
  std::sort(order.begin(), order.end(), [&](uint32_t a, uint32_t b) { return scores[a] < scores[b]; });
  double rank_sum_pos = 0;  // 1-based ranks, tied groups share their average rank
  double npos = 0;
  for (size_t i = 0; i < n;) {
    size_t j = i;
    double pos_in_group = 0;
    while (j < n && scores[order[j]] == scores[order[i]]) pos_in_group += labels[order[j++]] != 0;
    rank_sum_pos += pos_in_group * (static_cast<double>(i + 1) + static_cast<double>(j)) / 2.0;
    npos += pos_in_group;
    i = j;
  }
  const double nneg = static_cast<double>(n) - npos;
  if (npos == 0 || nneg == 0) return std::numeric_limits<double>::quiet_NaN();
  return (rank_sum_pos - npos * (npos + 1) / 2.0) / (npos * nneg);
}

SynthResult synth_write(const SynthSpec& spec, const std::string& train_path, const std::string& test_path) {
  if (spec.rows_train < 0 || spec.rows_test < 0) throw ConfigError("synth: row counts must be >= 0");
  if (spec.num_dense < 0 || spec.num_cat < 0) throw ConfigError("synth: feature counts must be >= 0");
  if (!spec.cardinalities.empty() && spec.cardinalities.size() != static_cast<size_t>(spec.num_cat))
    throw ConfigError("synth: " + std::to_string(spec.cardinalities.size()) + " cardinalities for " +
                      std::to_string(spec.num_cat) + " categorical features");
  if (spec.min_cardinality < 1 || spec.max_cardinality < spec.min_cardinality || spec.max_cardinality > (1 << 30))
    throw ConfigError("synth: need 1 <= min_cardinality <= max_cardinality <= 2^30");
  if (!(spec.positive_rate > 0 && spec.positive_rate < 1)) throw ConfigError("synth: positive_rate must be in (0, 1)");
  if (!(spec.missing_rate >= 0 && spec.missing_rate < 1)) throw ConfigError("synth: missing_rate must be in [0, 1)");
  if (!(spec.dense_share >= 0 && spec.dense_share <= 1)) throw ConfigError("synth: dense_share must be in [0, 1]");
  if (!(spec.logit_std >= 0)) throw ConfigError("synth: logit_std must be >= 0");

  Rng rng(spec.seed);
  SynthResult res;
  const int nc = spec.num_cat, nd = spec.num_dense;

  // Categorical features: cardinality, Zipf law, planted weight per value.
  res.cardinalities = spec.cardinalities;
  if (res.cardinalities.empty()) {
    const double lo = std::log(static_cast<double>(spec.min_cardinality)),
                 hi = std::log(static_cast<double>(spec.max_cardinality));
    for (int j = 0; j < nc; ++j)
      res.cardinalities.push_back(std::llround(std::exp(lo + (hi - lo) * rng.uniform())));
  }
  for (int64_t c : res.cardinalities)
    if (c < 1 || c > (1 << 30)) throw ConfigError("synth: cardinality " + std::to_string(c) + " out of range");
  std::vector<int> perm(static_cast<size_t>(nc));
  std::iota(perm.begin(), perm.end(), 0);
  for (int i = nc - 1; i > 0; --i) std::swap(perm[i], perm[rng.next() % static_cast<uint64_t>(i + 1)]);
  const int n_inf = static_cast<int>(std::lround(spec.informative_fraction * nc));
  res.informative.assign(perm.begin(), perm.begin() + std::clamp(n_inf, 0, nc));
  std::sort(res.informative.begin(), res.informative.end());
  std::vector<bool> is_inf(static_cast<size_t>(nc), false);
  for (int j : res.informative) is_inf[j] = true;

  const double present = 1.0 - spec.missing_rate;
  const double var_total = spec.logit_std * spec.logit_std;
  const double var_cat = res.informative.empty() ? 0.0 : (nd ? 1.0 - spec.dense_share : 1.0) * var_total;
  const double var_dense = nd ? var_total - var_cat : 0.0;
  // Each informative feature contributes var_cat / n_inf, counting the rows where it is missing (0).
  const double cat_scale = res.informative.empty() ? 0.0
                                                   : std::sqrt(var_cat / (res.informative.size() * present));

  std::vector<Alias> zipf(static_cast<size_t>(nc));
  std::vector<std::vector<float>> weight(static_cast<size_t>(nc));
  std::vector<uint64_t> token_salt(static_cast<size_t>(nc));
  for (int j = 0; j < nc; ++j) {
    const int64_t card = res.cardinalities[j];
    std::vector<double> p(static_cast<size_t>(card));
    double z = 0;
    for (int64_t r = 0; r < card; ++r) z += p[r] = std::pow(static_cast<double>(r + 1), -spec.zipf_exponent);
    for (double& x : p) x /= z;
    zipf[j].build(p);
    token_salt[j] = rng.next();
    if (!is_inf[j]) continue;
    std::vector<double> w(static_cast<size_t>(card));
    double mean = 0, sq = 0;
    for (int64_t r = 0; r < card; ++r) {
      w[r] = rng.normal();
      mean += p[r] * w[r];
    }
    for (int64_t r = 0; r < card; ++r) sq += p[r] * (w[r] - mean) * (w[r] - mean);
    const double s = sq > 0 ? cat_scale / std::sqrt(sq) : 0.0;
    weight[j].resize(static_cast<size_t>(card));
    for (int64_t r = 0; r < card; ++r) weight[j][r] = static_cast<float>((w[r] - mean) * s);
  }

  // Dense features: x = round(exp(mu + sd * z)) - 1 (heavy-tailed counts >= 0); feature 2 is -1 now
  // and then, like Criteo's. The planted effect is linear in the standardised log(1 + max(x, 0)).
  std::vector<double> mu(static_cast<size_t>(nd)), sd(mu), coef(mu), lmean(mu), lstd(mu);
  double coef_sq = 0;
  for (int k = 0; k < nd; ++k) {
    mu[k] = 0.5 + 4.0 * rng.uniform();
    sd[k] = 0.5 + 1.0 * rng.uniform();
    coef[k] = rng.normal();
    coef_sq += coef[k] * coef[k];
  }
  auto draw_dense = [&](int k, Rng& r) -> int64_t {
    double v = std::exp(mu[k] + sd[k] * r.normal());
    return std::min<int64_t>(std::llround(v), int64_t{1} << 40) - 1;
  };
  {  // Moments of log(1 + x) under the generator (missing fields count as x = 0), from a side stream.
    Rng side(splitmix64(spec.seed ^ 0xD15EA5E0ull));
    constexpr int kCal = 20000;
    for (int k = 0; k < nd; ++k) {
      double s1 = 0, s2 = 0;
      for (int i = 0; i < kCal; ++i) {
        double l = side.uniform() < spec.missing_rate ? 0.0 : std::log1p(std::max<double>(0, draw_dense(k, side)));
        s1 += l;
        s2 += l * l;
      }
      lmean[k] = s1 / kCal;
      lstd[k] = std::sqrt(std::max(1e-12, s2 / kCal - lmean[k] * lmean[k]));
    }
  }
  const double dense_scale = coef_sq > 0 ? std::sqrt(var_dense / coef_sq) : 0.0;
  std::vector<double> dcoef(static_cast<size_t>(nd));
  for (int k = 0; k < nd; ++k) dcoef[k] = coef[k] * dense_scale / lstd[k];
  double dconst = 0;
  for (int k = 0; k < nd; ++k) dconst -= dcoef[k] * lmean[k];

  // Bias for the target rate: E[sigmoid(b + L)] ~ sigmoid(b / sqrt(1 + pi var / 8)) for L ~ N(0, var).
  const double p0 = spec.positive_rate;
  res.bias = std::log(p0 / (1 - p0)) * std::sqrt(1.0 + M_PI * var_total / 8.0);

  auto write_split = [&](const std::string& path, int64_t rows, double* rate, double* auc) {
    Writer out(path);
    std::vector<double> logits(static_cast<size_t>(rows));
    std::vector<uint8_t> labels(static_cast<size_t>(rows));
    int64_t pos = 0;
    std::vector<int64_t> dv(static_cast<size_t>(nd));
    std::vector<int64_t> cv(static_cast<size_t>(nc));  // rank, or -1 when missing
    for (int64_t i = 0; i < rows; ++i) {
      double logit = res.bias + dconst;
      for (int k = 0; k < nd; ++k) {
        if (rng.uniform() < spec.missing_rate) {
          dv[k] = std::numeric_limits<int64_t>::min();
          continue;
        }
        int64_t x = (k == 1 && rng.uniform() < 0.01) ? -1 : draw_dense(k, rng);
        dv[k] = x;
        logit += dcoef[k] * std::log1p(static_cast<double>(std::max<int64_t>(0, x)));
      }
      for (int j = 0; j < nc; ++j) {
        uint64_t u = rng.next();
        if (static_cast<double>(u >> 11) * 0x1.0p-53 < spec.missing_rate) {
          cv[j] = -1;
          continue;
        }
        int32_t r = zipf[j].sample(rng.next());
        cv[j] = r;
        if (is_inf[j]) logit += weight[j][r];
      }
      const uint8_t y = rng.uniform() < sigmoid(logit) ? 1 : 0;
      logits[i] = logit;
      labels[i] = y;
      pos += y;

      char* p = out.reserve(static_cast<size_t>(2 + nd * 22 + nc * 9 + 1));
      char* const start = p;
      *p++ = y ? '1' : '0';
      for (int k = 0; k < nd; ++k) {
        *p++ = '\t';
        if (dv[k] != std::numeric_limits<int64_t>::min()) p = std::to_chars(p, p + 21, dv[k]).ptr;
      }
      for (int j = 0; j < nc; ++j) {
        *p++ = '\t';
        if (cv[j] < 0) continue;
        uint32_t tok = static_cast<uint32_t>(splitmix64(token_salt[j] + static_cast<uint64_t>(cv[j])));
        for (int d = 7; d >= 0; --d) p[7 - d] = "0123456789abcdef"[(tok >> (4 * d)) & 15];
        p += 8;
      }
      *p++ = '\n';
      out.n += static_cast<size_t>(p - start);
    }
    out.close();
    *rate = rows ? static_cast<double>(pos) / static_cast<double>(rows) : 0.0;
    *auc = exact_auc(logits, labels);  // sigmoid is monotone: ranking the logits ranks the probabilities
  };
  write_split(train_path, spec.rows_train, &res.positive_rate_train, &res.planted_auc_train);
  write_split(test_path, spec.rows_test, &res.positive_rate_test, &res.planted_auc_test);
  res.rows_train = spec.rows_train;
  res.rows_test = spec.rows_test;
  return res;
}

Batch random_batch(int64_t batch, int64_t num_dense, const std::vector<int64_t>& table_sizes, uint64_t seed) {
  std::mt19937_64 rng(seed);
  Batch b;
  b.labels = Tensor::empty({batch}, DType::kF32);
  b.dense = Tensor::empty({batch, num_dense}, DType::kF32);
  std::uniform_real_distribution<float> dense(0.0f, 5.0f);  // the range of log(1 + count)
  for (int64_t i = 0; i < batch; ++i) b.labels.data<float>()[i] = static_cast<float>(rng() & 1u);
  for (int64_t i = 0; i < batch * num_dense; ++i) b.dense.data<float>()[i] = dense(rng);
  for (int64_t rows : table_sizes) {
    Tensor idx = Tensor::empty({batch}, DType::kI64);
    Tensor off = Tensor::empty({batch + 1}, DType::kI64);
    std::uniform_int_distribution<int64_t> pick(0, rows - 1);
    for (int64_t i = 0; i < batch; ++i) idx.data<int64_t>()[i] = pick(rng);
    for (int64_t i = 0; i <= batch; ++i) off.data<int64_t>()[i] = i;
    b.indices.push_back(idx);
    b.offsets.push_back(off);
  }
  return b;
}

}  // namespace rf::data
