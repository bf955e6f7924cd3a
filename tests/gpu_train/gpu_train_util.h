// Helpers of the GPU training tests: the skip macro and `abs + rel * |ref|` comparisons of whole
// tensors; the small models and random batches are tests/common/model_fixtures.h.
#pragma once

#include <gtest/gtest.h>

#include <cmath>
#include <random>
#include <string>

#include "dataloader/batch.h"
#include "src/core/allocator.h"
#include "src/model/model.h"
#include "tests/common/model_fixtures.h"

namespace rf::test {

#define RF_REQUIRE_GPU()                                                                                     \
  do {                                                                                                       \
    if (!::rf::cuda_available())                                                                             \
      GTEST_SKIP() << "no CUDA device visible to this process (cuda_available() is false): the GPU training " \
                      "step cannot run here";                                                                \
  } while (0)

struct Tol {
  double abs, rel;
};

// Worst violation of |got - ref| <= abs + rel * |ref| over all elements, as a gtest assertion result.
inline ::testing::AssertionResult close(const Tensor& got_any, const Tensor& ref_any, Tol tol) {
  const Tensor got = got_any.to(Device::cpu()), ref = ref_any.to(Device::cpu());
  if (got.shape() != ref.shape())
    return ::testing::AssertionFailure() << "shape " << shape_str(got.shape()) << " vs " << shape_str(ref.shape());
  const float* g = got.data<float>();
  const float* r = ref.data<float>();
  double worst = 0;
  int64_t at = -1;
  for (int64_t i = 0; i < got.numel(); ++i) {
    const double err = std::fabs(static_cast<double>(g[i]) - r[i]);
    const double lim = tol.abs + tol.rel * std::fabs(static_cast<double>(r[i]));
    if (!(err <= lim) && (at < 0 || err / lim > worst)) {
      worst = err / lim;
      at = i;
    }
  }
  if (at < 0) return ::testing::AssertionSuccess();
  return ::testing::AssertionFailure() << "element " << at << ": got " << g[at] << ", expected " << r[at]
                                       << " (error " << worst << "x the tolerance)";
}

}  // namespace rf::test
