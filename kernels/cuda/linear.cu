// CUDA fully connected layer, y = x w^T + b in nn.Linear layout. The GEMMs go to cuBLASLt
// (cublaslt_gemm.cc) with the bias and ReLU in its epilogue; this file stages operands in the compute
// type, runs the fallback bias/ReLU kernel when cuBLASLt has no fused algorithm, and reduces db.
#include <cuda_runtime.h>

#include <atomic>

#include "kernels/cuda/cublaslt_gemm.h"
#include "kernels/cuda/cuda_common.cuh"
#include "kernels/cuda/cuda_ops.h"
#include "kernels/validate.h"

namespace rf::cuda {
namespace {

using detail::load_f32;
using detail::store_as;

std::atomic<bool> g_allow_tf32{false};

// y[i, j] = act(y[i, j] + b[j]) in place: the epilogue cuBLASLt could not fuse.
template <class T>
__global__ void bias_act_kernel(T* __restrict__ y, const float* __restrict__ b, int64_t rows, int64_t cols,
                                bool relu) {
  const int64_t n = rows * cols;
  const int64_t stride = static_cast<int64_t>(gridDim.x) * blockDim.x;
  for (int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < n; i += stride) {
    float v = load_f32(y[i]);
    if (b != nullptr) v += b[i % cols];
    if (relu) v = v > 0.0f ? v : 0.0f;
    y[i] = store_as<T>(v);
  }
}

// db[j] = sum_i dy[i, j] in fp32. A block owns 32 columns; its 8 warps' lanes stride the rows, then
// the 8 partial sums per column are added in a fixed order: deterministic, and coalesced (a warp
// reads 32 consecutive columns of one row).
template <class T>
__global__ void column_sum_kernel(const T* __restrict__ dy, float* __restrict__ db, int64_t rows, int64_t cols) {
  __shared__ float partial[8][33];
  const int64_t col = static_cast<int64_t>(blockIdx.x) * 32 + threadIdx.x;
  float acc = 0.0f;
  if (col < cols)
    for (int64_t r = threadIdx.y; r < rows; r += 8) acc += load_f32(dy[r * cols + col]);
  partial[threadIdx.y][threadIdx.x] = acc;
  __syncthreads();
  if (threadIdx.y == 0 && col < cols) {
    float s = 0.0f;
#pragma unroll
    for (int k = 0; k < 8; ++k) s += partial[k][threadIdx.x];
    db[col] = s;
  }
}

// The GEMM operand type: the compute type, except that fp32 compute on 16-bit tensors multiplies them
// as they are (widening is exact, and cuBLASLt accumulates in fp32 either way).
DType operand_type(DType tensors, DType compute) { return compute == DType::kF32 ? tensors : compute; }

// `t` as `type`: itself, or a rounded copy (the caching allocator makes the scratch cheap).
Tensor as_type(const Tensor& t, DType type) {
  if (t.dtype() == type) return t;
  Tensor out = Tensor::empty(t.shape(), type, t.device());
  cuda::cast(t, out);
  return out;
}

template <class F>
void by_type(DType t, F f) {
  switch (t) {
    case DType::kF32: f(float{}); break;
    case DType::kBF16: f(bf16{}); break;
    case DType::kF16: f(f16{}); break;
    default: throw ShapeError(std::string("unsupported dtype ") + dtype_name(t));
  }
}

void bias_act(Tensor& y2d, const Tensor* b, bool relu) {
  if (b == nullptr && !relu) return;
  const int64_t rows = y2d.size(0), cols = y2d.size(1);
  if (rows * cols == 0) return;
  by_type(y2d.dtype(), [&](auto tag) {
    using T = decltype(tag);
    bias_act_kernel<T><<<detail::grid_for(rows * cols, 256), 256, 0, detail::stream()>>>(
        static_cast<T*>(y2d.raw()), b ? b->data<float>() : nullptr, rows, cols, relu);
  });
  detail::check_launch();
}

}  // namespace

void set_allow_tf32(bool on) { g_allow_tf32 = on; }
bool allow_tf32() { return g_allow_tf32; }

void linear_forward(const Tensor& x, const Tensor& w, const Tensor* b, Tensor& y, DType compute, bool relu) {
  const checks::LinearDims dims = checks::linear_forward(x, w, b, y, compute, checks::Backend::kCuda);
  const int64_t batch = dims.batch, in = dims.in, out = dims.out;
  if (batch == 0 || out == 0) return;
  detail::DeviceScope scope(x);
  const DType op = operand_type(x.dtype(), compute);
  const Tensor xo = as_type(x, op), wo = as_type(w, op);
  // cuBLASLt writes fp32 or the operand type; any other output goes through fp32 scratch.
  const bool direct = y.dtype() == op || y.dtype() == DType::kF32;
  Tensor d = direct ? y : Tensor::empty(y.shape(), DType::kF32, y.device());
  // cuBLASLt reads the bias in D's type: round the fp32 bias once when D is 16-bit.
  Tensor bias_d;
  if (b != nullptr) bias_d = as_type(*b, d.dtype());

  GemmArgs g;
  g.trans_b = true;  // y = x w^T
  g.m = batch;
  g.n = out;
  g.k = in;
  g.a = xo.raw();
  g.lda = in;
  g.b = wo.raw();
  g.ldb = in;
  g.d = d.raw();
  g.ldd = out;
  g.ab_type = op;
  g.d_type = d.dtype();
  g.bias = b ? bias_d.raw() : nullptr;
  g.relu = relu;
  g.tf32 = allow_tf32();
  g.device = x.device().index;
  if (!gemm(g)) bias_act(d, b, relu);
  if (!direct) cuda::cast(d, y);
}

void linear_backward(const Tensor& x, const Tensor& w, const Tensor& dy, Tensor* dx, Tensor& dw, Tensor* db,
                     DType compute) {
  const checks::LinearDims dims = checks::linear_backward(x, w, dy, dx, dw, db, compute, checks::Backend::kCuda);
  const int64_t batch = dims.batch, in = dims.in, out = dims.out;
  detail::DeviceScope scope(x);
  const DType op = operand_type(x.dtype(), compute);
  const Tensor dyo = as_type(dy, op);
  const int device = x.device().index;
  const bool tf32 = allow_tf32();

  if (out > 0 && in > 0) {
    // dw [out, in] = dy^T [out, batch] x [batch, in], fp32 out (k == batch == 0 writes zeros).
    const Tensor xo = as_type(x, op);
    GemmArgs g;
    g.trans_a = true;
    g.m = out;
    g.n = in;
    g.k = batch;
    g.a = dyo.raw();
    g.lda = out;
    g.b = xo.raw();
    g.ldb = in;
    g.d = dw.raw();
    g.ldd = in;
    g.ab_type = op;
    g.d_type = DType::kF32;
    g.tf32 = tf32;
    g.device = device;
    gemm(g);
  }
  if (dx != nullptr && batch > 0 && in > 0) {
    // dx [batch, in] = dy [batch, out] w [out, in]
    const Tensor wo = as_type(w, op);
    const bool direct = dx->dtype() == op || dx->dtype() == DType::kF32;
    Tensor d = direct ? *dx : Tensor::empty(dx->shape(), DType::kF32, dx->device());
    GemmArgs g;
    g.m = batch;
    g.n = in;
    g.k = out;
    g.a = dyo.raw();
    g.lda = out;
    g.b = wo.raw();
    g.ldb = in;
    g.d = d.raw();
    g.ldd = in;
    g.ab_type = op;
    g.d_type = d.dtype();
    g.tf32 = tf32;
    g.device = device;
    gemm(g);
    if (!direct) cuda::cast(d, *dx);
  }
  if (db != nullptr && out > 0) {
    // Sums the unrounded dy, as the CPU does.
    by_type(dy.dtype(), [&](auto tag) {
      using T = decltype(tag);
      const dim3 block(32, 8);
      const unsigned grid = static_cast<unsigned>((out + 31) / 32);
      column_sum_kernel<T><<<grid, block, 0, detail::stream()>>>(static_cast<const T*>(dy.raw()), db->data<float>(),
                                                                 batch, out);
    });
    detail::check_launch();
  }
}

}  // namespace rf::cuda
