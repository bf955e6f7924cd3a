// Reference binary cross-entropy on logits (mean over the batch), plain loops on scalar type T, in
// the stable form max(z, 0) - z y + log(1 + exp(-|z|)).
#pragma once

#include <cmath>
#include <cstdint>

namespace rf::ref {

template <class T>
T bce_with_logits_forward(const T* z, const T* y, int64_t n) {
  T sum = 0;
  for (int64_t i = 0; i < n; ++i) sum += (z[i] > T(0) ? z[i] : T(0)) - z[i] * y[i] + std::log1p(std::exp(-std::fabs(z[i])));
  return sum / T(n);
}

// grad = scale (sigmoid(z) - y) / n
template <class T>
void bce_with_logits_backward(const T* z, const T* y, int64_t n, T scale, T* grad) {
  for (int64_t i = 0; i < n; ++i) grad[i] = scale * (T(1) / (T(1) + std::exp(-z[i])) - y[i]) / T(n);
}

}  // namespace rf::ref
