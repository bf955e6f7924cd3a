// Shared helpers of the kernel tests: seeded random tensors (never zeros), conversions between the
// storage types and double, `abs + rel * |ref|` comparisons that report the worst element, and
// central finite differences on the double-precision references.
#pragma once

#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <functional>
#include <random>
#include <string>
#include <vector>

#include "src/core/dtype.h"
#include "src/core/tensor.h"

namespace rf::test {

// A tolerance: |fast - ref| <= abs + rel * |ref|.
struct Tol {
  double abs;
  double rel;
};

class Rng {
 public:
  explicit Rng(uint64_t seed) : gen_(seed) {}
  // Uniform in [lo, hi).
  double uniform(double lo = -1.0, double hi = 1.0) { return std::uniform_real_distribution<double>(lo, hi)(gen_); }
  // Uniform magnitude in [lo_mag, hi_mag) with a random sign: keeps values away from a kink at 0.
  double away_from_zero(double lo_mag, double hi_mag) {
    double m = uniform(lo_mag, hi_mag);
    return (gen_() & 1) ? m : -m;
  }
  int64_t integer(int64_t lo, int64_t hi) { return std::uniform_int_distribution<int64_t>(lo, hi)(gen_); }
  uint32_t bits32() { return static_cast<uint32_t>(gen_()); }
  std::vector<float> floats(int64_t n, double lo = -1.0, double hi = 1.0) {
    std::vector<float> v(static_cast<size_t>(n));
    for (auto& x : v) x = static_cast<float>(uniform(lo, hi));
    return v;
  }
  std::mt19937_64& gen() { return gen_; }

 private:
  std::mt19937_64 gen_;
};

inline std::vector<double> to_double(const std::vector<float>& v) { return {v.begin(), v.end()}; }

// The values a tensor holds, as double (any floating dtype).
inline std::vector<double> values(const Tensor& t) {
  std::vector<double> out(static_cast<size_t>(t.numel()));
  switch (t.dtype()) {
    case DType::kF32: {
      const float* p = t.data<float>();
      for (size_t i = 0; i < out.size(); ++i) out[i] = p[i];
      break;
    }
    case DType::kBF16: {
      const bf16* p = t.data<bf16>();
      for (size_t i = 0; i < out.size(); ++i) out[i] = to_f32(p[i]);
      break;
    }
    case DType::kF16: {
      const f16* p = t.data<f16>();
      for (size_t i = 0; i < out.size(); ++i) out[i] = to_f32(p[i]);
      break;
    }
    default:
      ADD_FAILURE() << "values(): not a floating tensor";
  }
  return out;
}

// A host tensor of dtype `dt` holding `v` rounded to that dtype.
inline Tensor make(const std::vector<float>& v, const Shape& shape, DType dt = DType::kF32) {
  Tensor t = Tensor::empty(shape, dt);
  EXPECT_EQ(static_cast<int64_t>(v.size()), t.numel());
  for (size_t i = 0; i < v.size(); ++i) {
    if (dt == DType::kF32) t.data<float>()[i] = v[i];
    else if (dt == DType::kBF16) t.data<bf16>()[i] = to_bf16(v[i]);
    else if (dt == DType::kF16) t.data<f16>()[i] = to_f16(v[i]);
  }
  return t;
}

// Random tensor of dtype `dt`; also returns (via `exact`) the stored values as double, so references
// run on exactly what the fast kernel reads.
inline Tensor random_tensor(Rng& rng, const Shape& shape, DType dt, std::vector<double>* exact, double lo = -1.0,
                            double hi = 1.0) {
  Tensor t = make(rng.floats(shape_numel(shape), lo, hi), shape, dt);
  if (exact) *exact = values(t);
  return t;
}

// Fills a tensor with a sentinel (NaN) so that an element a kernel forgets to write shows up.
inline void poison(Tensor& t) {
  for (int64_t i = 0; i < t.numel(); ++i) {
    if (t.dtype() == DType::kF32) t.data<float>()[i] = NAN;
    else if (t.dtype() == DType::kBF16) t.data<bf16>()[i] = to_bf16(NAN);
  }
}

inline ::testing::AssertionResult close(const std::vector<double>& fast, const std::vector<double>& ref, Tol tol,
                                        const std::string& what) {
  if (fast.size() != ref.size())
    return ::testing::AssertionFailure() << what << ": " << fast.size() << " values, reference has " << ref.size();
  size_t bad = 0, worst = 0;
  double worst_ratio = 0.0;
  for (size_t i = 0; i < ref.size(); ++i) {
    const double allowed = tol.abs + tol.rel * std::fabs(ref[i]);
    const double err = std::fabs(fast[i] - ref[i]);
    const double ratio = std::isnan(err) ? INFINITY : err / allowed;
    if (!(err <= allowed)) ++bad;
    if (ratio > worst_ratio || (bad == 1 && !(err <= allowed))) {
      worst_ratio = ratio;
      worst = i;
    }
  }
  if (bad == 0) return ::testing::AssertionSuccess();
  return ::testing::AssertionFailure() << what << ": " << bad << " of " << ref.size()
                                       << " elements out of tolerance (abs " << tol.abs << " + rel " << tol.rel
                                       << "); worst at " << worst << ": got " << fast[worst] << ", want "
                                       << ref[worst];
}

inline ::testing::AssertionResult close(const Tensor& fast, const std::vector<double>& ref, Tol tol,
                                        const std::string& what) {
  return close(values(fast), ref, tol, what);
}

// Central differences of the scalar f at x: (f(x + eps e_i) - f(x - eps e_i)) / 2 eps for every i.
inline std::vector<double> finite_diff(const std::function<double(const std::vector<double>&)>& f,
                                       std::vector<double> x, double eps = 1e-6) {
  std::vector<double> g(x.size());
  for (size_t i = 0; i < x.size(); ++i) {
    const double keep = x[i];
    x[i] = keep + eps;
    const double up = f(x);
    x[i] = keep - eps;
    const double down = f(x);
    x[i] = keep;
    g[i] = (up - down) / (2.0 * eps);
  }
  return g;
}

inline double dot(const std::vector<double>& a, const std::vector<double>& b) {
  double s = 0.0;
  for (size_t i = 0; i < a.size(); ++i) s += a[i] * b[i];
  return s;
}

// Finite differences on the double references: the loss is the linear probe <r, f(x)> with random r,
// evaluated to ~1e-16 relative, so central differences with eps 1e-6 are good to ~1e-9 plus the
// O(eps^2) truncation term.
inline constexpr Tol kFdTol{1e-7, 1e-6};

}  // namespace rf::test
