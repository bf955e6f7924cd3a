// Binary cross-entropy on logits, averaged over the batch, computed in the numerically stable form
// max(z, 0) - z y + log(1 + exp(-|z|)) as torch.nn.BCEWithLogitsLoss.
#pragma once

#include "src/core/tensor.h"

namespace rf {

// logits [batch] fp32, labels [batch] fp32 in {0, 1} (any value in [0, 1] is accepted). Returns the
// mean loss, accumulated in double.
double bce_with_logits_forward(const Tensor& logits, const Tensor& labels);
// The same mean rounded to fp32 into `loss` [1] fp32 on the logits' device, without waiting for it on
// a GPU (a CUDA graph's step reads it after the replay).
void bce_with_logits_forward(const Tensor& logits, const Tensor& labels, Tensor& loss);

// grad [batch] = scale * (sigmoid(z) - y) / batch. `scale` is the loss scale (1 without fp16 scaling).
void bce_with_logits_backward(const Tensor& logits, const Tensor& labels, float scale, Tensor& grad);

}  // namespace rf
