// CPU implementations of every op in kernels/<op>.h (namespace rf::cpu). Same arguments and
// semantics as the public declarations; kernels/dispatch.cc calls these for host tensors. fp32 GEMMs go
// to OpenBLAS (cblas_sgemm), bf16 ones to oneDNN; loops are OpenMP-parallel.
#pragma once

#include <cstdint>

#include "kernels/activation.h"
#include "kernels/cast.h"
#include "kernels/concat.h"
#include "kernels/cross.h"
#include "kernels/embedding_bag.h"
#include "kernels/interaction.h"
#include "kernels/linear.h"
#include "kernels/loss.h"
#include "src/core/tensor.h"

namespace rf::cpu {

void linear_forward(const Tensor& x, const Tensor& w, const Tensor* b, Tensor& y, DType compute);
void linear_backward(const Tensor& x, const Tensor& w, const Tensor& dy, Tensor* dx, Tensor& dw, Tensor* db,
                     DType compute);

void relu_forward(const Tensor& x, Tensor& y);
void relu_backward(const Tensor& y, const Tensor& dy, Tensor& dx);
void sigmoid_forward(const Tensor& x, Tensor& y);
void sigmoid_backward(const Tensor& y, const Tensor& dy, Tensor& dx);

void embedding_bag_forward(const Tensor& table, const Tensor& indices, const Tensor& offsets, PoolMode mode,
                           Tensor& out);
SparseGrad embedding_bag_backward(const Tensor& indices, const Tensor& offsets, const Tensor& grad_out,
                                  PoolMode mode, int64_t num_rows);
void embedding_bags_forward(const std::vector<Tensor>& tables, const std::vector<Tensor>& indices,
                            const std::vector<Tensor>& offsets, PoolMode mode, Tensor& out);
std::vector<SparseGrad> embedding_bags_backward(const std::vector<Tensor>& indices, const std::vector<Tensor>& offsets,
                                                const Tensor& grad_out, PoolMode mode,
                                                const std::vector<int64_t>& num_rows);
void check_bags(const std::vector<Tensor>& indices, const std::vector<Tensor>& offsets,
                const std::vector<int64_t>& num_rows);

void interaction_forward(const Tensor& dense, const Tensor& emb, bool self_interaction, Tensor& out);
void interaction_backward(const Tensor& dense, const Tensor& emb, const Tensor& grad_out, bool self_interaction,
                          Tensor& grad_dense, Tensor& grad_emb);

void cross_forward(const Tensor& x0, const Tensor& x, const CrossWeights& weights, Tensor& y, CrossSaved& saved,
                   DType compute);
void cross_backward(const Tensor& x0, const Tensor& x, const CrossWeights& weights, const CrossSaved& saved,
                    const Tensor& dy, Tensor& dx0, Tensor& dx, CrossGrads& grads, DType compute);

double bce_with_logits_forward(const Tensor& logits, const Tensor& labels);
void bce_with_logits_backward(const Tensor& logits, const Tensor& labels, float scale, Tensor& grad);

void cast(const Tensor& src, Tensor& dst);

void concat_columns(const std::vector<Tensor>& parts, Tensor& out);
void copy_tensors(const std::vector<Tensor>& src, const std::vector<Tensor>& dst);
void split_columns(const Tensor& in, const Tensor* addend, const std::vector<Tensor>& parts);

}  // namespace rf::cpu
