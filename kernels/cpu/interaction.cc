// CPU DLRM dot interaction. Per sample the F = T + 1 feature vectors Z form an [F, dim] matrix; the
// forward takes the lower triangle of Z Z^T, the backward multiplies the symmetric matrix G built from
// the pair gradients by Z (grad Z = (G + G^T) Z), both as small per-sample loops parallel over the batch
// with contiguous, vectorisable inner loops over dim.
#include <algorithm>
#include <vector>

#include "kernels/cpu/cpu_ops.h"
#include "kernels/validate.h"

namespace rf::cpu {
namespace {

inline float dot(const float* a, const float* b, int64_t n) {
  float acc = 0.0f;
#pragma omp simd reduction(+ : acc)
  for (int64_t d = 0; d < n; ++d) acc += a[d] * b[d];
  return acc;
}

inline void axpy(float alpha, const float* x, float* y, int64_t n) {
#pragma omp simd
  for (int64_t d = 0; d < n; ++d) y[d] += alpha * x[d];
}

}  // namespace

void interaction_forward(const Tensor& dense, const Tensor& emb, bool self_interaction, Tensor& out) {
  const checks::InteractionDims s = checks::interaction_forward(dense, emb, self_interaction, out);
  const float* dp = dense.data<float>();
  const float* ep = emb.data<float>();
  float* op = out.data<float>();
  const int64_t f = s.tables + 1, dim = s.dim;
  const int64_t extra = self_interaction ? 1 : 0;
#pragma omp parallel for schedule(static)
  for (int64_t b = 0; b < s.batch; ++b) {
    const float* dense_b = dp + b * dim;
    const float* emb_b = ep + b * s.tables * dim;
    auto z = [&](int64_t i) { return i == 0 ? dense_b : emb_b + (i - 1) * dim; };
    float* o = op + b * s.out_dim;
    std::copy(dense_b, dense_b + dim, o);
    int64_t p = dim;
    for (int64_t i = 0; i < f; ++i)
      for (int64_t j = 0; j < i + extra; ++j) o[p++] = dot(z(i), z(j), dim);
  }
}

void interaction_backward(const Tensor& dense, const Tensor& emb, const Tensor& grad_out, bool self_interaction,
                          Tensor& grad_dense, Tensor& grad_emb) {
  const checks::InteractionDims s =
      checks::interaction_backward(dense, emb, grad_out, self_interaction, grad_dense, grad_emb);
  const float* dp = dense.data<float>();
  const float* ep = emb.data<float>();
  const float* gp = grad_out.data<float>();
  float* gdp = grad_dense.data<float>();
  float* gep = grad_emb.data<float>();
  const int64_t f = s.tables + 1, dim = s.dim;
  const int64_t extra = self_interaction ? 1 : 0;
#pragma omp parallel for schedule(static)
  for (int64_t b = 0; b < s.batch; ++b) {
    const float* dense_b = dp + b * dim;
    const float* emb_b = ep + b * s.tables * dim;
    auto z = [&](int64_t i) { return i == 0 ? dense_b : emb_b + (i - 1) * dim; };
    float* gdense_b = gdp + b * dim;
    float* gemb_b = gep + b * s.tables * dim;
    auto gz = [&](int64_t i) { return i == 0 ? gdense_b : gemb_b + (i - 1) * dim; };
    const float* g = gp + b * s.out_dim;
    // The dense vector is also passed through to out[:, :dim], so its gradient starts from there.
    std::copy(g, g + dim, gdense_b);
    std::fill(gemb_b, gemb_b + s.tables * dim, 0.0f);
    int64_t p = dim;
    for (int64_t i = 0; i < f; ++i) {
      for (int64_t j = 0; j < i + extra; ++j) {
        const float gij = g[p++];
        if (i == j) {
          axpy(2.0f * gij, z(i), gz(i), dim);  // d<z, z>/dz = 2 z
        } else {
          axpy(gij, z(j), gz(i), dim);
          axpy(gij, z(i), gz(j), dim);
        }
      }
    }
  }
}

}  // namespace rf::cpu
