// Argument checks shared by the CPU and CUDA implementations of the ops in kernels/<op>.h: shapes,
// dtypes and the output sizes derived from them, written once so that both backends accept the same
// calls and reject the rest with the same ShapeError text. Each backend calls these first, then runs
// its own kernel (plus any check only it has, like the host-side offset scan of the CPU embedding bag
// or the CUDA 32-bit index limit); kernels/dispatch.cc only routes by device.
#pragma once

#include <vector>

#include <cstdint>

#include "kernels/cross.h"
#include "src/core/tensor.h"

namespace rf::checks {

// Which implementation is asking, for the checks whose answer differs (the compute and tensor dtypes
// of linear: fp16 is CUDA-only).
enum class Backend { kCpu, kCuda };

// ---- linear: x [batch, in], w [out, in], b [out] fp32, y [batch, out] ---------------------------------
struct LinearDims {
  int64_t batch, in, out;
};
LinearDims linear_forward(const Tensor& x, const Tensor& w, const Tensor* b, const Tensor& y, DType compute,
                          Backend backend);
LinearDims linear_backward(const Tensor& x, const Tensor& w, const Tensor& dy, const Tensor* dx, const Tensor& dw,
                           const Tensor* db, DType compute, Backend backend);

// ---- cross: x0, x [batch, dim] fp32, weights as CrossWeights ------------------------------------------
struct CrossDims {
  int64_t batch, dim, rank;  // rank 0 when full rank
};
// Also checks y.
CrossDims cross_forward(const Tensor& x0, const Tensor& x, const CrossWeights& weights, const Tensor& y);
// Also checks saved.h, dy, dx0 and dx (saved.vx is the backend's to check, after it has updated dx0).
CrossDims cross_backward(const Tensor& x0, const Tensor& x, const CrossWeights& weights, const CrossSaved& saved,
                         const Tensor& dy, const Tensor& dx0, const Tensor& dx);

// ---- interaction: dense [batch, dim], emb [batch, tables, dim] fp32 -----------------------------------
struct InteractionDims {
  int64_t batch, tables, dim, out_dim;
};
InteractionDims interaction_forward(const Tensor& dense, const Tensor& emb, bool self_interaction, const Tensor& out);
InteractionDims interaction_backward(const Tensor& dense, const Tensor& emb, const Tensor& grad_out,
                                     bool self_interaction, const Tensor& grad_dense, const Tensor& grad_emb);

// ---- embedding bags: indices [nnz] int64, offsets [batch + 1] int64 -----------------------------------
// The offset and index values live where the backend's memory is, so each backend passes its own
// check of them (or of its size limits); it runs right after the bag shapes pass, before any other
// argument is looked at. Each function returns batch.
using BagCheck = void (*)(const char* op, const Tensor& indices, const Tensor& offsets, int64_t batch);
int64_t embedding_bags(const char* op, const Tensor& indices, const Tensor& offsets, BagCheck backend_check);
// table [rows, dim] fp32/fp16/bf16, the bags, out [batch, dim] fp32.
int64_t embedding_bag_forward(const Tensor& table, const Tensor& indices, const Tensor& offsets, const Tensor& out,
                              BagCheck backend_check);
// The bags, grad_out [batch, dim] fp32.
int64_t embedding_bag_backward(const Tensor& indices, const Tensor& offsets, const Tensor& grad_out,
                               BagCheck backend_check);
// Many tables (kernels/embedding_bag.h's embedding_bags_*): T >= 1 equal-length lists, every bag list
// through embedding_bags (the op named with its table, "OP (table t)") with one batch for all; tables
// 2-d, one floating dtype and one dim; out / grad_out [batch, T * dim] fp32. Return batch.
int64_t embedding_bags_forward(const std::vector<Tensor>& tables, const std::vector<Tensor>& indices,
                               const std::vector<Tensor>& offsets, const Tensor& out, BagCheck backend_check);
// The tables of a many-table call (embedding_bags_forward's, the fused optimizers'): at least one, each
// 2-d fp32/fp16/bf16, one dtype and one dim for all.
void embedding_tables(const char* op, const std::vector<const Tensor*>& tables);
int64_t embedding_bags_backward(const std::vector<Tensor>& indices, const std::vector<Tensor>& offsets,
                                const Tensor& grad_out, const std::vector<int64_t>& num_rows, BagCheck backend_check);
// The bag lists alone, as embedding_bags_forward checks them, for `num_tables` tables (check_embedding_bags).
int64_t embedding_bags_lists(const std::vector<Tensor>& indices, const std::vector<Tensor>& offsets,
                             size_t num_tables, BagCheck backend_check);

// ---- loss: logits, labels [batch] fp32. Each returns batch. -------------------------------------------
// The inputs, and a batch of at least one (a mean needs one).
int64_t bce_with_logits_forward(const Tensor& logits, const Tensor& labels);
// The inputs and grad [batch] fp32.
int64_t bce_with_logits_backward(const Tensor& logits, const Tensor& labels, const Tensor& grad);

// ---- cast: floating dtypes, equal element counts -------------------------------------------------------
void cast(const Tensor& src, const Tensor& dst);

// ---- copy_tensors: equal-length lists, each pair defined, one dtype and one element count ---------------
void copy_tensors(const std::vector<Tensor>& src, const std::vector<Tensor>& dst);

}  // namespace rf::checks
