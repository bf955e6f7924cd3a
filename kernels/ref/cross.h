// Reference DCNv2 cross layer, plain loops on scalar type T:
//   y = x0 * (W x + b) + x            full rank (v == nullptr), W [dim, dim]
//   y = x0 * (U (V x) + b) + x        low rank, V [rank, dim], U [dim, rank]
#pragma once

#include <cstdint>
#include <vector>

namespace rf::ref {

// h [batch, dim] = W x + b or U (V x) + b; vx [batch, rank] = V x (low rank only; may be null).
template <class T>
void cross_hidden(const T* x, const T* w, const T* v, const T* u, const T* b, int64_t batch, int64_t dim,
                  int64_t rank, T* h, T* vx) {
  std::vector<T> tmp(static_cast<size_t>(rank > 0 ? rank : 1));
  for (int64_t n = 0; n < batch; ++n) {
    const T* xn = x + n * dim;
    if (v) {
      for (int64_t r = 0; r < rank; ++r) {
        T acc = 0;
        for (int64_t k = 0; k < dim; ++k) acc += v[r * dim + k] * xn[k];
        tmp[r] = acc;
        if (vx) vx[n * rank + r] = acc;
      }
      for (int64_t i = 0; i < dim; ++i) {
        T acc = b[i];
        for (int64_t r = 0; r < rank; ++r) acc += u[i * rank + r] * tmp[r];
        h[n * dim + i] = acc;
      }
    } else {
      for (int64_t i = 0; i < dim; ++i) {
        T acc = b[i];
        for (int64_t k = 0; k < dim; ++k) acc += w[i * dim + k] * xn[k];
        h[n * dim + i] = acc;
      }
    }
  }
}

template <class T>
void cross_forward(const T* x0, const T* x, const T* w, const T* v, const T* u, const T* b, int64_t batch,
                   int64_t dim, int64_t rank, T* y) {
  std::vector<T> h(static_cast<size_t>(batch * dim));
  cross_hidden(x, w, v, u, b, batch, dim, rank, h.data(), static_cast<T*>(nullptr));
  for (int64_t i = 0; i < batch * dim; ++i) y[i] = x0[i] * h[i] + x[i];
}

// dy [batch, dim]. dx0 += dy * h; dx, dw (or dv, du), db are overwritten.
template <class T>
void cross_backward(const T* x0, const T* x, const T* w, const T* v, const T* u, const T* b, int64_t batch,
                    int64_t dim, int64_t rank, const T* dy, T* dx0, T* dx, T* dw, T* dv, T* du, T* db) {
  std::vector<T> h(static_cast<size_t>(batch * dim)), vx(static_cast<size_t>(batch * (rank > 0 ? rank : 1)));
  cross_hidden(x, w, v, u, b, batch, dim, rank, h.data(), vx.data());
  std::vector<T> dh(static_cast<size_t>(batch * dim));
  for (int64_t i = 0; i < batch * dim; ++i) {
    dh[i] = dy[i] * x0[i];
    dx0[i] += dy[i] * h[i];
    dx[i] = dy[i];
  }
  for (int64_t i = 0; i < dim; ++i) {
    db[i] = 0;
    for (int64_t n = 0; n < batch; ++n) db[i] += dh[n * dim + i];
  }
  if (v) {
    std::vector<T> dvx(static_cast<size_t>(batch * rank), T(0));
    for (int64_t i = 0; i < dim; ++i)
      for (int64_t r = 0; r < rank; ++r) {
        T acc = 0;
        for (int64_t n = 0; n < batch; ++n) acc += dh[n * dim + i] * vx[n * rank + r];
        du[i * rank + r] = acc;
      }
    for (int64_t n = 0; n < batch; ++n)
      for (int64_t r = 0; r < rank; ++r)
        for (int64_t i = 0; i < dim; ++i) dvx[n * rank + r] += dh[n * dim + i] * u[i * rank + r];
    for (int64_t r = 0; r < rank; ++r)
      for (int64_t k = 0; k < dim; ++k) {
        T acc = 0;
        for (int64_t n = 0; n < batch; ++n) acc += dvx[n * rank + r] * x[n * dim + k];
        dv[r * dim + k] = acc;
      }
    for (int64_t n = 0; n < batch; ++n)
      for (int64_t k = 0; k < dim; ++k)
        for (int64_t r = 0; r < rank; ++r) dx[n * dim + k] += dvx[n * rank + r] * v[r * dim + k];
  } else {
    for (int64_t i = 0; i < dim; ++i)
      for (int64_t k = 0; k < dim; ++k) {
        T acc = 0;
        for (int64_t n = 0; n < batch; ++n) acc += dh[n * dim + i] * x[n * dim + k];
        dw[i * dim + k] = acc;
      }
    for (int64_t n = 0; n < batch; ++n)
      for (int64_t k = 0; k < dim; ++k)
        for (int64_t i = 0; i < dim; ++i) dx[n * dim + k] += dh[n * dim + i] * w[i * dim + k];
  }
}

}  // namespace rf::ref
