// Routes each public op (kernels/<op>.h) to its CPU or CUDA implementation by the device of its
// tensors. Every tensor of one call must live on one device (nothing is copied behind the caller's
// back); CUDA tensors in a build without CUDA throw BackendError.
#include <initializer_list>
#include <string>
#include <vector>

#include "kernels/activation.h"
#include "kernels/cast.h"
#include "kernels/concat.h"
#include "kernels/cpu/cpu_ops.h"
#include "kernels/cross.h"
#include "kernels/embedding_bag.h"
#include "kernels/interaction.h"
#include "kernels/linear.h"
#include "kernels/loss.h"
#if RECFORGE_WITH_CUDA
#include "kernels/cuda/cuda_ops.h"
#endif

namespace rf {
namespace {

// The one device all defined tensors of a call share; throws ShapeError naming the op otherwise.
template <class Range>
Device common_device_of(const char* op, const Range& tensors) {
  const Tensor* first = nullptr;
  for (const Tensor* t : tensors) {
    if (t == nullptr || !t->defined()) continue;
    if (first == nullptr) first = t;
    else if (!(t->device() == first->device()))
      throw ShapeError(std::string(op) + ": tensors on different devices (" + first->device().str() + " and " +
                       t->device().str() + ")");
  }
  return first ? first->device() : Device::cpu();
}
Device common_device(const char* op, std::initializer_list<const Tensor*> tensors) {
  return common_device_of(op, tensors);
}
Device common_device(const char* op, const std::vector<const Tensor*>& tensors) {
  return common_device_of(op, tensors);
}

// `singles` and every tensor of `lists`, as common_device takes them (ops over tensor lists).
std::vector<const Tensor*> tensors_of(std::initializer_list<const Tensor*> singles,
                                      std::initializer_list<const std::vector<Tensor>*> lists) {
  std::vector<const Tensor*> all(singles);
  for (const std::vector<Tensor>* list : lists)
    for (const Tensor& t : *list) all.push_back(&t);
  return all;
}

// The CUDA branch of an op: its rf::cuda version when recforge was built with CUDA, else BackendError.
#if RECFORGE_WITH_CUDA
#define RF_CUDA_OR_THROW(op, ...) __VA_ARGS__
#else
[[noreturn]] void no_cuda(const char* op) {
  throw BackendError(std::string("op ") + op + ": CUDA tensors but recforge was built without CUDA");
}
#define RF_CUDA_OR_THROW(op, ...) no_cuda(#op)
#endif

}  // namespace

// ---- linear ---------------------------------------------------------------------------------------
void linear_forward(const Tensor& x, const Tensor& w, const Tensor* b, Tensor& y) {
  linear_forward(x, w, b, y, DType::kF32);
}

void linear_backward(const Tensor& x, const Tensor& w, const Tensor& dy, Tensor* dx, Tensor& dw, Tensor* db) {
  linear_backward(x, w, dy, dx, dw, db, DType::kF32);
}

void linear_forward(const Tensor& x, const Tensor& w, const Tensor* b, Tensor& y, DType compute) {
  if (common_device("linear_forward", {&x, &w, b, &y}).is_cpu()) return cpu::linear_forward(x, w, b, y, compute);
  RF_CUDA_OR_THROW(linear_forward, return cuda::linear_forward(x, w, b, y, compute));
}

void linear_backward(const Tensor& x, const Tensor& w, const Tensor& dy, Tensor* dx, Tensor& dw, Tensor* db,
                     DType compute) {
  if (common_device("linear_backward", {&x, &w, &dy, dx, &dw, db}).is_cpu())
    return cpu::linear_backward(x, w, dy, dx, dw, db, compute);
  RF_CUDA_OR_THROW(linear_backward, return cuda::linear_backward(x, w, dy, dx, dw, db, compute));
}

// ---- activations ----------------------------------------------------------------------------------
void relu_forward(const Tensor& x, Tensor& y) {
  if (common_device("relu_forward", {&x, &y}).is_cpu()) return cpu::relu_forward(x, y);
  RF_CUDA_OR_THROW(relu_forward, return cuda::relu_forward(x, y));
}

void relu_backward(const Tensor& y, const Tensor& dy, Tensor& dx) {
  if (common_device("relu_backward", {&y, &dy, &dx}).is_cpu()) return cpu::relu_backward(y, dy, dx);
  RF_CUDA_OR_THROW(relu_backward, return cuda::relu_backward(y, dy, dx));
}

void sigmoid_forward(const Tensor& x, Tensor& y) {
  if (common_device("sigmoid_forward", {&x, &y}).is_cpu()) return cpu::sigmoid_forward(x, y);
  RF_CUDA_OR_THROW(sigmoid_forward, return cuda::sigmoid_forward(x, y));
}

void sigmoid_backward(const Tensor& y, const Tensor& dy, Tensor& dx) {
  if (common_device("sigmoid_backward", {&y, &dy, &dx}).is_cpu()) return cpu::sigmoid_backward(y, dy, dx);
  RF_CUDA_OR_THROW(sigmoid_backward, return cuda::sigmoid_backward(y, dy, dx));
}

// ---- embedding bags -------------------------------------------------------------------------------
PoolMode parse_pool_mode(const std::string& name) {
  if (name == "sum") return PoolMode::kSum;
  if (name == "mean") return PoolMode::kMean;
  throw ConfigError("unknown pooling mode '" + name + "' (expected sum or mean)");
}

void embedding_bag_forward(const Tensor& table, const Tensor& indices, const Tensor& offsets, PoolMode mode,
                           Tensor& out) {
  if (common_device("embedding_bag_forward", {&table, &indices, &offsets, &out}).is_cpu())
    return cpu::embedding_bag_forward(table, indices, offsets, mode, out);
  RF_CUDA_OR_THROW(embedding_bag_forward, return cuda::embedding_bag_forward(table, indices, offsets, mode, out));
}

SparseGrad embedding_bag_backward(const Tensor& indices, const Tensor& offsets, const Tensor& grad_out,
                                  PoolMode mode, int64_t num_rows) {
  if (common_device("embedding_bag_backward", {&indices, &offsets, &grad_out}).is_cpu())
    return cpu::embedding_bag_backward(indices, offsets, grad_out, mode, num_rows);
  RF_CUDA_OR_THROW(embedding_bag_backward, return cuda::embedding_bag_backward(indices, offsets, grad_out, mode, num_rows));
}

void embedding_bags_forward(const std::vector<Tensor>& tables, const std::vector<Tensor>& indices,
                            const std::vector<Tensor>& offsets, PoolMode mode, Tensor& out) {
  if (common_device("embedding_bags_forward", tensors_of({&out}, {&tables, &indices, &offsets})).is_cpu())
    return cpu::embedding_bags_forward(tables, indices, offsets, mode, out);
  RF_CUDA_OR_THROW(embedding_bags_forward, return cuda::embedding_bags_forward(tables, indices, offsets, mode, out));
}

void check_embedding_bags(const std::vector<Tensor>& indices, const std::vector<Tensor>& offsets,
                          const std::vector<int64_t>& num_rows) {
  const std::vector<const Tensor*> all = tensors_of({}, {&indices, &offsets});
  if (all.empty() && num_rows.empty()) return;  // no tables: nothing to check
  if (all.empty() || common_device("check_embedding_bags", all).is_cpu())
    return cpu::check_bags(indices, offsets, num_rows);
  RF_CUDA_OR_THROW(check_embedding_bags, return cuda::check_embedding_bags(indices, offsets, num_rows));
}

std::vector<SparseGrad> embedding_bags_backward(const std::vector<Tensor>& indices, const std::vector<Tensor>& offsets,
                                                const Tensor& grad_out, PoolMode mode,
                                                const std::vector<int64_t>& num_rows) {
  if (common_device("embedding_bags_backward", tensors_of({&grad_out}, {&indices, &offsets})).is_cpu())
    return cpu::embedding_bags_backward(indices, offsets, grad_out, mode, num_rows);
  RF_CUDA_OR_THROW(embedding_bags_backward,
                   return cuda::embedding_bags_backward(indices, offsets, grad_out, mode, num_rows));
}

// ---- interaction ----------------------------------------------------------------------------------
int64_t interaction_output_dim(int64_t num_tables, int64_t dim, bool self_interaction) {
  int64_t f = num_tables + 1;
  return dim + (self_interaction ? f * (f + 1) / 2 : f * (f - 1) / 2);
}

void interaction_forward(const Tensor& dense, const Tensor& emb, bool self_interaction, Tensor& out) {
  if (common_device("interaction_forward", {&dense, &emb, &out}).is_cpu())
    return cpu::interaction_forward(dense, emb, self_interaction, out);
  RF_CUDA_OR_THROW(interaction_forward, return cuda::interaction_forward(dense, emb, self_interaction, out));
}

void interaction_backward(const Tensor& dense, const Tensor& emb, const Tensor& grad_out, bool self_interaction,
                          Tensor& grad_dense, Tensor& grad_emb) {
  if (common_device("interaction_backward", {&dense, &emb, &grad_out, &grad_dense, &grad_emb}).is_cpu())
    return cpu::interaction_backward(dense, emb, grad_out, self_interaction, grad_dense, grad_emb);
  RF_CUDA_OR_THROW(interaction_backward, return cuda::interaction_backward(dense, emb, grad_out, self_interaction, grad_dense, grad_emb));
}

// ---- cross ----------------------------------------------------------------------------------------
void cross_forward(const Tensor& x0, const Tensor& x, const CrossWeights& weights, Tensor& y, CrossSaved& saved,
                   DType compute) {
  if (common_device("cross_forward", {&x0, &x, &weights.w, &weights.v, &weights.u, &weights.b, &y}).is_cpu())
    return cpu::cross_forward(x0, x, weights, y, saved, compute);
  RF_CUDA_OR_THROW(cross_forward, return cuda::cross_forward(x0, x, weights, y, saved, compute));
}

void cross_backward(const Tensor& x0, const Tensor& x, const CrossWeights& weights, const CrossSaved& saved,
                    const Tensor& dy, Tensor& dx0, Tensor& dx, CrossGrads& grads, DType compute) {
  if (common_device("cross_backward", {&x0, &x, &weights.w, &weights.v, &weights.u, &weights.b, &saved.h, &dy,
                                       &dx0, &dx})
          .is_cpu())
    return cpu::cross_backward(x0, x, weights, saved, dy, dx0, dx, grads, compute);
  RF_CUDA_OR_THROW(cross_backward, return cuda::cross_backward(x0, x, weights, saved, dy, dx0, dx, grads, compute));
}

// ---- loss -----------------------------------------------------------------------------------------
double bce_with_logits_forward(const Tensor& logits, const Tensor& labels) {
  if (common_device("bce_with_logits_forward", {&logits, &labels}).is_cpu())
    return cpu::bce_with_logits_forward(logits, labels);
  RF_CUDA_OR_THROW(bce_with_logits_forward, return cuda::bce_with_logits_forward(logits, labels));
}

void bce_with_logits_forward(const Tensor& logits, const Tensor& labels, Tensor& loss) {
  if (common_device("bce_with_logits_forward", {&logits, &labels, &loss}).is_cpu()) {
    const double mean = cpu::bce_with_logits_forward(logits, labels);
    check_shape(loss, {1}, "bce_with_logits_forward: loss");
    loss.data<float>()[0] = static_cast<float>(mean);
    return;
  }
  RF_CUDA_OR_THROW(bce_with_logits_forward, return cuda::bce_with_logits_forward_device(logits, labels, loss));
}

void bce_with_logits_backward(const Tensor& logits, const Tensor& labels, float scale, Tensor& grad) {
  if (common_device("bce_with_logits_backward", {&logits, &labels, &grad}).is_cpu())
    return cpu::bce_with_logits_backward(logits, labels, scale, grad);
  RF_CUDA_OR_THROW(bce_with_logits_backward, return cuda::bce_with_logits_backward(logits, labels, scale, grad));
}

// ---- cast -----------------------------------------------------------------------------------------
void cast(const Tensor& src, Tensor& dst) {
  if (common_device("cast", {&src, &dst}).is_cpu()) return cpu::cast(src, dst);
#if RECFORGE_WITH_CUDA
  return cuda::cast(src, dst);
#else
  throw BackendError("op cast: CUDA tensors but recforge was built without CUDA");
#endif
}

// ---- column concat / split ------------------------------------------------------------------------
void concat_columns(const std::vector<Tensor>& parts, Tensor& out) {
  bool cpu = out.device().is_cpu();
  for (const Tensor& p : parts) common_device("concat_columns", {&p, &out});
  if (cpu) return cpu::concat_columns(parts, out);
  RF_CUDA_OR_THROW(concat_columns, return cuda::concat_columns(parts, out));
}

void split_columns(const Tensor& in, const Tensor* addend, const std::vector<Tensor>& parts) {
  bool cpu = common_device("split_columns", {&in, addend}).is_cpu();
  for (const Tensor& p : parts) common_device("split_columns", {&p, &in});
  if (cpu) return cpu::split_columns(in, addend, parts);
  RF_CUDA_OR_THROW(split_columns, return cuda::split_columns(in, addend, parts));
}

void copy_tensors(const std::vector<Tensor>& src, const std::vector<Tensor>& dst) {
  const std::vector<const Tensor*> all = tensors_of({}, {&src, &dst});
  if (all.empty() || common_device("copy_tensors", all).is_cpu()) return cpu::copy_tensors(src, dst);
  RF_CUDA_OR_THROW(copy_tensors, return cuda::copy_tensors(src, dst));
}

}  // namespace rf
