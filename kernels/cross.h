// One DCNv2 cross layer (Wang et al. 2021; TorchRec CrossNet / LowRankCrossNet):
//   y = x0 * (W x + b) + x          full rank, W [dim, dim]
//   y = x0 * (U (V x) + b) + x      low rank,  V [rank, dim], U [dim, rank]
// with * elementwise. The GEMMs go through linear.h.
#pragma once

#include "src/core/tensor.h"

namespace rf {

struct CrossWeights {
  Tensor w;  // [dim, dim] full rank (undefined when low rank)
  Tensor v;  // [rank, dim] low rank (undefined when full rank)
  Tensor u;  // [dim, rank] low rank
  Tensor b;  // [dim]
  bool low_rank() const { return v.defined(); }
};

// Same layout as CrossWeights, fp32 gradients.
using CrossGrads = CrossWeights;

// What the forward keeps for the backward.
struct CrossSaved {
  Tensor h;   // [batch, dim] = W x + b (or U V x + b)
  Tensor vx;  // [batch, rank] = V x, low rank only
};

// x0, x, y [batch, dim] fp32. `compute` is the GEMMs' operand type (see linear.h); the elementwise
// part and everything kept in `saved` stay fp32.
void cross_forward(const Tensor& x0, const Tensor& x, const CrossWeights& weights, Tensor& y, CrossSaved& saved,
                   DType compute = DType::kF32);

// dy [batch, dim]. Adds this layer's share to dx0 (every cross layer reads x0, so callers zero it
// once and each layer accumulates), writes (overwrites) dx and the weight gradients.
void cross_backward(const Tensor& x0, const Tensor& x, const CrossWeights& weights, const CrossSaved& saved,
                    const Tensor& dy, Tensor& dx0, Tensor& dx, CrossGrads& grads, DType compute = DType::kF32);

}  // namespace rf
