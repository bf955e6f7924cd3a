// Elementwise activations. Inputs and outputs have the same shape and dtype (fp32 or bf16; math in
// fp32). In-place calls (y aliasing x, dx aliasing dy) are allowed.
#pragma once

#include "src/core/tensor.h"

namespace rf {

void relu_forward(const Tensor& x, Tensor& y);
// dx = dy where y > 0, else 0. Takes the forward output y (equivalent to x > 0 for ReLU).
void relu_backward(const Tensor& y, const Tensor& dy, Tensor& dx);

void sigmoid_forward(const Tensor& x, Tensor& y);
// dx = dy * y * (1 - y), from the forward output y.
void sigmoid_backward(const Tensor& y, const Tensor& dy, Tensor& dx);

}  // namespace rf
