// CPU elementwise activations (ReLU, sigmoid) for fp32 and bf16 tensors, math in fp32. Each element
// is read before it is written, so in-place calls (y aliasing x, dx aliasing dy) are safe.
#include <cmath>

#include "kernels/cpu/cpu_ops.h"
#include "kernels/cpu/cpu_util.h"

namespace rf::cpu {
namespace {

using detail::load_f32;
using detail::store_as;

void check_same(const Tensor& ref, const Tensor& t, const char* what) {
  check_shape(t, ref.shape(), what);
  check_dtype(t, ref.dtype(), what);
}

void check_compute(const Tensor& t, const char* what) {
  if (t.dtype() != DType::kF32 && t.dtype() != DType::kBF16)
    throw ShapeError(std::string(what) + ": expected dtype fp32 or bf16, got " + dtype_name(t.dtype()));
}

// Numerically stable logistic: never evaluates exp of a large positive number.
inline float sigmoid(float v) {
  if (v >= 0.0f) return 1.0f / (1.0f + std::exp(-v));
  float e = std::exp(v);
  return e / (1.0f + e);
}

template <class T, class F>
void map1(const Tensor& a, Tensor& out, F f) {
  const T* ap = a.data<T>();
  T* op = out.data<T>();
  const int64_t n = a.numel();
#pragma omp parallel for simd schedule(static)
  for (int64_t i = 0; i < n; ++i) op[i] = store_as<T>(f(load_f32(ap[i])));
}

template <class T, class F>
void map2(const Tensor& a, const Tensor& b, Tensor& out, F f) {
  const T* ap = a.data<T>();
  const T* bp = b.data<T>();
  T* op = out.data<T>();
  const int64_t n = a.numel();
#pragma omp parallel for simd schedule(static)
  for (int64_t i = 0; i < n; ++i) op[i] = store_as<T>(f(load_f32(ap[i]), load_f32(bp[i])));
}

template <class F>
void dispatch1(const Tensor& a, Tensor& out, F f) {
  if (a.dtype() == DType::kF32) map1<float>(a, out, f);
  else map1<bf16>(a, out, f);
}

template <class F>
void dispatch2(const Tensor& a, const Tensor& b, Tensor& out, F f) {
  if (a.dtype() == DType::kF32) map2<float>(a, b, out, f);
  else map2<bf16>(a, b, out, f);
}

}  // namespace

void relu_forward(const Tensor& x, Tensor& y) {
  check_compute(x, "relu_forward: x");
  check_same(x, y, "relu_forward: y");
  dispatch1(x, y, [](float v) { return v > 0.0f ? v : 0.0f; });
}

void relu_backward(const Tensor& y, const Tensor& dy, Tensor& dx) {
  check_compute(y, "relu_backward: y");
  check_same(y, dy, "relu_backward: dy");
  check_same(y, dx, "relu_backward: dx");
  dispatch2(y, dy, dx, [](float yv, float g) { return yv > 0.0f ? g : 0.0f; });
}

void sigmoid_forward(const Tensor& x, Tensor& y) {
  check_compute(x, "sigmoid_forward: x");
  check_same(x, y, "sigmoid_forward: y");
  dispatch1(x, y, [](float v) { return sigmoid(v); });
}

void sigmoid_backward(const Tensor& y, const Tensor& dy, Tensor& dx) {
  check_compute(y, "sigmoid_backward: y");
  check_same(y, dy, "sigmoid_backward: dy");
  check_same(y, dx, "sigmoid_backward: dx");
  dispatch2(y, dy, dx, [](float yv, float g) { return g * yv * (1.0f - yv); });
}

}  // namespace rf::cpu
