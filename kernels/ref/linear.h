// Reference fully connected layer (nn.Linear layout), plain loops on scalar type T (run in double by
// the tests). Trusted by simplicity; the fast kernels are tested against it.
#pragma once

#include <cstdint>

namespace rf::ref {

// x [batch, in], w [out, in], b [out] or nullptr, y [batch, out]: y = x w^T + b.
template <class T>
void linear_forward(const T* x, const T* w, const T* b, T* y, int64_t batch, int64_t in, int64_t out) {
  for (int64_t i = 0; i < batch; ++i)
    for (int64_t o = 0; o < out; ++o) {
      T acc = b ? b[o] : T(0);
      for (int64_t k = 0; k < in; ++k) acc += x[i * in + k] * w[o * in + k];
      y[i * out + o] = acc;
    }
}

// dy [batch, out]; dx [batch, in] = dy w (skipped when null), dw [out, in] = dy^T x, db [out] = sum of
// dy over the batch (skipped when null).
template <class T>
void linear_backward(const T* x, const T* w, const T* dy, T* dx, T* dw, T* db, int64_t batch, int64_t in,
                     int64_t out) {
  if (dx)
    for (int64_t i = 0; i < batch; ++i)
      for (int64_t k = 0; k < in; ++k) {
        T acc = 0;
        for (int64_t o = 0; o < out; ++o) acc += dy[i * out + o] * w[o * in + k];
        dx[i * in + k] = acc;
      }
  for (int64_t o = 0; o < out; ++o)
    for (int64_t k = 0; k < in; ++k) {
      T acc = 0;
      for (int64_t i = 0; i < batch; ++i) acc += dy[i * out + o] * x[i * in + k];
      dw[o * in + k] = acc;
    }
  if (db)
    for (int64_t o = 0; o < out; ++o) {
      T acc = 0;
      for (int64_t i = 0; i < batch; ++i) acc += dy[i * out + o];
      db[o] = acc;
    }
}

}  // namespace rf::ref
