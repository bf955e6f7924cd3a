// CPU binary cross-entropy on logits (mean over the batch), in the stable form
// max(z, 0) - z y + log1p(exp(-|z|)). The sum is reduced in double so that the mean of a large batch
// does not depend on the thread count beyond the last few bits.
#include <cmath>

#include "kernels/cpu/cpu_ops.h"

namespace rf::cpu {
namespace {

int64_t check_inputs(const char* op, const Tensor& logits, const Tensor& labels) {
  const std::string o(op);
  check_dtype(logits, DType::kF32, (o + ": logits").c_str());
  check_dtype(labels, DType::kF32, (o + ": labels").c_str());
  if (logits.dim() != 1) throw ShapeError(o + ": logits: expected [batch], got " + shape_str(logits.shape()));
  check_shape(labels, logits.shape(), (o + ": labels").c_str());
  return logits.size(0);
}

}  // namespace

double bce_with_logits_forward(const Tensor& logits, const Tensor& labels) {
  const int64_t n = check_inputs("bce_with_logits_forward", logits, labels);
  if (n == 0) throw ShapeError("bce_with_logits_forward: empty batch has no mean loss");
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
  const int64_t n = check_inputs("bce_with_logits_backward", logits, labels);
  check_shape(grad, logits.shape(), "bce_with_logits_backward: grad");
  check_dtype(grad, DType::kF32, "bce_with_logits_backward: grad");
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
