// Column concatenation and its inverse for 2-D fp32 blocks: the layout changes between layers that
// were host memcpy loops (embedding bags interleaved into [batch, T, dim], DCNv2's x0 = [dense, emb]
// and its gradient split), as one op so they run where the tensors live.
#pragma once

#include <vector>

#include "src/core/tensor.h"

namespace rf {

// parts[i] [rows, w_i] fp32 -> out [rows, sum_i w_i] fp32, part i in columns [w_0 + ... + w_{i-1}, ...).
// Every tensor on one device; out must not alias a part. One kernel launch per 64 parts on CUDA.
void concat_columns(const std::vector<Tensor>& parts, Tensor& out);

// The inverse: in [rows, sum_i w_i] fp32 -> parts[i] [rows, w_i] (overwritten; the Tensor handles are
// const, their elements are written). With `addend` (same shape as in), each part receives
// in + addend elementwise (one fp32 add, so CPU and CUDA agree bit for bit): the gradient of a tensor
// read along two paths, split as it is summed.
void split_columns(const Tensor& in, const Tensor* addend, const std::vector<Tensor>& parts);

// dst[i] = src[i] for every i (each pair one dtype and element count, any dtype): a batch's tensors into a
// CUDA graph's input buffers. Every tensor on one device; one kernel launch per 64 pairs on CUDA instead
// of a copy call per tensor.
void copy_tensors(const std::vector<Tensor>& src, const std::vector<Tensor>& dst);

}  // namespace rf
