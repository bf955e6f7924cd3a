// CUDA DLRM dot interaction. One block per sample: Z = [dense, emb_0..emb_{T-1}] ([F, dim], F = T + 1)
// is staged in shared memory with rows padded by one float (threads of a warp read the same column
// of different rows: without the pad those reads would share a bank whenever dim is a multiple of 32),
// then each thread computes pairs of the lower triangle of Z Z^T. The backward builds the symmetric
// pair-gradient matrix G in shared memory and writes grad Z = G Z, plus the dense pass-through.
#include <cuda_runtime.h>

#include <cmath>

#include "kernels/cuda/cuda_common.cuh"
#include "kernels/cuda/cuda_ops.h"
#include "kernels/validate.h"

namespace rf::cuda {
namespace {

constexpr int kThreads = 128;

// Pair p of the row-major lower triangle (j < i, or j <= i with self-interaction) as (i, j).
__device__ __forceinline__ void pair_of(int p, bool self, int& i, int& j) {
  // Strict: p = i (i - 1) / 2 + j; self: p = i (i + 1) / 2 + j. Solve in float, then correct by one.
  const float fp = static_cast<float>(p);
  i = self ? static_cast<int>((sqrtf(8.0f * fp + 1.0f) - 1.0f) * 0.5f)
           : static_cast<int>((sqrtf(8.0f * fp + 1.0f) + 1.0f) * 0.5f);
  auto first = [self](int r) { return self ? r * (r + 1) / 2 : r * (r - 1) / 2; };
  while (first(i) > p) --i;
  while (first(i + 1) <= p) ++i;
  j = p - first(i);
}

// Loads sample b's Z into zs [F, dim + 1].
__device__ __forceinline__ void load_z(const float* dense_b, const float* emb_b, int f, int dim, float* zs) {
  const int ld = dim + 1;
  for (int e = threadIdx.x; e < f * dim; e += blockDim.x) {
    const int i = e / dim, d = e % dim;
    zs[i * ld + d] = i == 0 ? dense_b[d] : emb_b[(i - 1) * dim + d];
  }
}

__global__ void __launch_bounds__(kThreads) forward_kernel(const float* __restrict__ dense,
                                                           const float* __restrict__ emb, int tables, int dim,
                                                           int out_dim, bool self, float* __restrict__ out) {
  extern __shared__ float zs[];
  const int64_t b = blockIdx.x;
  const int f = tables + 1, ld = dim + 1;
  const float* dense_b = dense + b * dim;
  load_z(dense_b, emb + b * tables * dim, f, dim, zs);
  __syncthreads();
  float* o = out + b * out_dim;
  for (int d = threadIdx.x; d < dim; d += blockDim.x) o[d] = zs[d];
  const int pairs = out_dim - dim;
  for (int p = threadIdx.x; p < pairs; p += blockDim.x) {
    int i, j;
    pair_of(p, self, i, j);
    const float* zi = zs + i * ld;
    const float* zj = zs + j * ld;
    float acc = 0.0f;
    for (int d = 0; d < dim; ++d) acc += zi[d] * zj[d];
    o[dim + p] = acc;
  }
}

// Shared: zs [F, dim + 1], then G [F, F].
__global__ void __launch_bounds__(kThreads) backward_kernel(const float* __restrict__ dense,
                                                            const float* __restrict__ emb,
                                                            const float* __restrict__ grad_out, int tables, int dim,
                                                            int out_dim, bool self, float* __restrict__ grad_dense,
                                                            float* __restrict__ grad_emb) {
  extern __shared__ float zs[];
  const int64_t b = blockIdx.x;
  const int f = tables + 1, ld = dim + 1;
  float* gs = zs + f * ld;
  load_z(dense + b * dim, emb + b * tables * dim, f, dim, zs);
  const float* g = grad_out + b * out_dim;
  for (int e = threadIdx.x; e < f * f; e += blockDim.x) gs[e] = 0.0f;
  __syncthreads();
  const int pairs = out_dim - dim;
  // Each (i, j) pair owns the two entries G[i][j] and G[j][i] (one entry, doubled, on the diagonal):
  // no two threads write the same entry.
  for (int p = threadIdx.x; p < pairs; p += blockDim.x) {
    int i, j;
    pair_of(p, self, i, j);
    const float gij = g[dim + p];
    if (i == j) {
      gs[i * f + i] = 2.0f * gij;  // d<z, z>/dz = 2 z
    } else {
      gs[i * f + j] = gij;
      gs[j * f + i] = gij;
    }
  }
  __syncthreads();
  for (int e = threadIdx.x; e < f * dim; e += blockDim.x) {
    const int i = e / dim, d = e % dim;
    float acc = i == 0 ? g[d] : 0.0f;  // the dense vector is also passed through to out[:, :dim]
    const float* gi = gs + i * f;
    for (int j = 0; j < f; ++j) acc += gi[j] * zs[j * ld + d];
    if (i == 0) grad_dense[b * dim + d] = acc;
    else grad_emb[(b * tables + (i - 1)) * dim + d] = acc;
  }
}

// Dynamic shared memory of `bytes` for `kernel`, raising its limit past 48 KiB when the device allows.
template <class K>
void reserve_shared(K kernel, size_t bytes, const char* op) {
  if (bytes <= 48 * 1024) return;
  int device = 0, limit = 0;
  RF_CHECK_CUDA(cudaGetDevice(&device));
  RF_CHECK_CUDA(cudaDeviceGetAttribute(&limit, cudaDevAttrMaxSharedMemoryPerBlockOptin, device));
  if (bytes > static_cast<size_t>(limit))
    throw ShapeError(std::string(op) + ": (tables + 1) x dim too large for one block's shared memory (" +
                     std::to_string(bytes) + " bytes, device limit " + std::to_string(limit) + ")");
  RF_CHECK_CUDA(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, static_cast<int>(bytes)));
}

}  // namespace

void interaction_forward(const Tensor& dense, const Tensor& emb, bool self_interaction, Tensor& out) {
  const checks::InteractionDims s = checks::interaction_forward(dense, emb, self_interaction, out);
  if (s.batch == 0) return;
  detail::DeviceScope scope(dense);
  const size_t shared = static_cast<size_t>((s.tables + 1) * (s.dim + 1)) * sizeof(float);
  reserve_shared(forward_kernel, shared, "interaction_forward");
  RF_CHECK(s.batch < (int64_t{1} << 31), "interaction_forward: batch exceeds the grid");
  forward_kernel<<<static_cast<unsigned>(s.batch), kThreads, shared, detail::stream()>>>(
      dense.data<float>(), emb.data<float>(), static_cast<int>(s.tables), static_cast<int>(s.dim),
      static_cast<int>(s.out_dim), self_interaction, out.data<float>());
  detail::check_launch();
}

void interaction_backward(const Tensor& dense, const Tensor& emb, const Tensor& grad_out, bool self_interaction,
                          Tensor& grad_dense, Tensor& grad_emb) {
  const checks::InteractionDims s =
      checks::interaction_backward(dense, emb, grad_out, self_interaction, grad_dense, grad_emb);
  if (s.batch == 0) return;
  detail::DeviceScope scope(dense);
  const int64_t f = s.tables + 1;
  const size_t shared = static_cast<size_t>(f * (s.dim + 1) + f * f) * sizeof(float);
  reserve_shared(backward_kernel, shared, "interaction_backward");
  RF_CHECK(s.batch < (int64_t{1} << 31), "interaction_backward: batch exceeds the grid");
  backward_kernel<<<static_cast<unsigned>(s.batch), kThreads, shared, detail::stream()>>>(
      dense.data<float>(), emb.data<float>(), grad_out.data<float>(), static_cast<int>(s.tables),
      static_cast<int>(s.dim), static_cast<int>(s.out_dim), self_interaction, grad_dense.data<float>(),
      grad_emb.data<float>());
  detail::check_launch();
}

}  // namespace rf::cuda
