// CPU binary cross-entropy on logits (mean over the batch), in the stable form
// max(z, 0) - z y + log1p(exp(-|z|)). The sum is reduced in double so that the mean of a large batch
// does not depend on the thread count beyond the last few bits.
#include <cmath>

#include "kernels/cpu/cpu_ops.h"
#include "kernels/validate.h"

namespace rf::cpu {

double bce_with_logits_forward(const Tensor& logits, const Tensor& labels) {
  const int64_t n = checks::bce_with_logits_forward(logits, labels);
  const float* z = logits.data<float>();
  const float* y = labels.data<float>();
  double sum = 0.0;
#pragma omp parallel for schedule(static) reduction(+ : sum)
  for (int64_t i = 0; i < n; ++i) {
    const double zi = z[i];
    sum += std::max(zi, 0.0) - zi * y[i] + std::log1p(std::exp(-std::fabs(zi)));
  }
  return sum / static_cast<double>(n);
}

void bce_with_logits_backward(const Tensor& logits, const Tensor& labels, float scale, Tensor& grad) {
  const int64_t n = checks::bce_with_logits_backward(logits, labels, grad);
  const float* z = logits.data<float>();
  const float* y = labels.data<float>();
  float* g = grad.data<float>();
  const float k = n > 0 ? scale / static_cast<float>(n) : 0.0f;
#pragma omp parallel for schedule(static)
  for (int64_t i = 0; i < n; ++i) {
    // Stable sigmoid: exp of a non-positive number only.
    const float e = std::exp(-std::fabs(z[i]));
    const float s = z[i] >= 0.0f ? 1.0f / (1.0f + e) : e / (1.0f + e);
    g[i] = k * (s - y[i]);
  }
}

}  // namespace rf::cpu
