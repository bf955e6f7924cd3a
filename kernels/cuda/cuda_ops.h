// CUDA implementations of the ops in kernels/<op>.h (namespace rf::cuda), for tensors on a CUDA
// device. Only built when RECFORGE_WITH_CUDA; kernels/dispatch.cc routes to these. Same arguments and
// semantics as the public declarations, plus a few device-only extras (fused ReLU epilogue, TF32,
// bounds checks). Every kernel runs on the device's compute stream (see cuda_common.cuh), so calls are
// ordered with each other and with the caching allocator; none of them synchronises the device except
// where a result size or a validation error must reach the host (noted per op).
#pragma once

#include <cstdint>
#include <vector>

#include "kernels/activation.h"
#include "kernels/cast.h"
#include "kernels/concat.h"
#include "kernels/cross.h"
#include "kernels/embedding_bag.h"
#include "kernels/interaction.h"
#include "kernels/linear.h"
#include "kernels/loss.h"
#include "src/core/tensor.h"

namespace rf::cuda {

// ---- settings (process-wide) ---------------------------------------------------------------------
// fp32-compute GEMMs on TF32 tensor cores (10-bit mantissa operands, fp32 accumulation). Off by
// default: fp32 then matches the CPU to fp32 accuracy.
void set_allow_tf32(bool on);
bool allow_tf32();
// Validate embedding offsets and indices on the device before use (one 8-byte device-to-host copy,
// hence a synchronisation, per forward). On by default; turn off for inputs already validated (the
// binary shard loader checks indices against the table sizes) to keep the step free of syncs.
void set_embedding_bounds_checks(bool on);
bool embedding_bounds_checks();
// Lanes per touched row in the sparse optimizers (SGD, row-wise Adagrad; fused or from a SparseGrad):
// the embedding kernels' group size divided by `narrowing` (1 or 2) wherever a lane then still covers
// its row in at most two pieces (rows up to 128 elements), so that each lane updates twice the pieces
// and a warp twice the rows at once: more memory requests in flight for a latency-bound kernel. 2 by
// default (on an H200: 0.39 -> 0.47 of copy bandwidth for dim 128 fp32, 0.36 -> 0.42 for dim 64; the
// same for dim 16); cuda_kernels_bench measures both. Changes the order of row-wise Adagrad's sum of
// squares (a rounding difference), never the fused and SparseGrad paths' agreement.
void set_sparse_update_narrowing(int narrowing);
int sparse_update_narrowing();
// The fused embedding backward + sparse update (embedding_bags_backward_sgd / _rowwise_adagrad): true
// (default) sorts the lookups and sums each row's gradient in bag order, bit-reproducible; false hashes
// them by row instead (one insert launch, one update launch): a row looked up once is updated straight
// from its bag's gradient, the lookups of a row looked up more often add up with float atomics, so the
// last bits of such a row's update vary from run to run. Calls of more than 32 tables, rows longer than
// 512 elements (128 when unaligned) or whose rows looked up twice could need more than 1 GiB of scratch
// (sum over tables of min(lookups / 2, rows) x dim x 4 bytes) always sort. `train.deterministic` in the
// trainer.
void set_deterministic_embedding_update(bool on);
bool deterministic_embedding_update();

// Elementwise fp32/fp16/bf16 conversion on the tensors' device, bit-identical to the CPU cast
// (round to nearest even as src/core/dtype.h).
void cast(const Tensor& src, Tensor& dst);

// ---- linear (kernels/cuda/linear.cu over the cuBLASLt wrapper in cublaslt_gemm.cc) ----------------
// x, w, y one dtype: fp32, bf16 or fp16. `compute` is the GEMM operand type (fp32, bf16, fp16);
// accumulation is fp32 always. fp32 tensors with 16-bit compute are rounded to the compute type into
// scratch first (autocast). The bias (fp32) and, with `relu`, max(0, .) run in cuBLASLt's epilogue;
// with a 16-bit output cuBLASLt takes the bias in the output type, so it is rounded to it first.
void linear_forward(const Tensor& x, const Tensor& w, const Tensor* b, Tensor& y, DType compute, bool relu = false);
// dw and db fp32; dx in x's dtype. db is a deterministic column sum of dy in fp32.
void linear_backward(const Tensor& x, const Tensor& w, const Tensor& dy, Tensor* dx, Tensor& dw, Tensor* db,
                     DType compute);

// ---- activations: fp32, bf16 and fp16, math in fp32, in-place allowed ------------------------------
void relu_forward(const Tensor& x, Tensor& y);
void relu_backward(const Tensor& y, const Tensor& dy, Tensor& dx);
void sigmoid_forward(const Tensor& x, Tensor& y);
void sigmoid_backward(const Tensor& y, const Tensor& dy, Tensor& dx);

// ---- embedding bags --------------------------------------------------------------------------------
// Forward: groups of 1-32 lanes per bag (16-byte row reads), many bags per block, fp32 accumulation.
// With bounds checks on, a bad offset or index throws DataError naming bag and index (one sync).
void embedding_bag_forward(const Tensor& table, const Tensor& indices, const Tensor& offsets, PoolMode mode,
                           Tensor& out);
// Backward: radix sort of (row, bag) pairs by row (stable, so each row's bags stay ascending), run-length
// encode to unique rows, then one lane group per unique row reduces its gradient rows in that fixed
// order: no atomics, bit-reproducible. Synchronises once to size the result (the unique count).
SparseGrad embedding_bag_backward(const Tensor& indices, const Tensor& offsets, const Tensor& grad_out,
                                  PoolMode mode, int64_t num_rows);
// Many tables (kernels/embedding_bag.h): the forward one launch for up to 32 tables (plus one
// validation launch and sync with bounds checks on); the backward one sort of all tables' lookups and one
// sync for all of them.
void embedding_bags_forward(const std::vector<Tensor>& tables, const std::vector<Tensor>& indices,
                            const std::vector<Tensor>& offsets, PoolMode mode, Tensor& out);
std::vector<SparseGrad> embedding_bags_backward(const std::vector<Tensor>& indices, const std::vector<Tensor>& offsets,
                                                const Tensor& grad_out, PoolMode mode,
                                                const std::vector<int64_t>& num_rows);

// The index and offset checks of embedding_bags_forward on device tensors (one launch, one
// synchronisation), without pooling anything.
void check_embedding_bags(const std::vector<Tensor>& indices, const std::vector<Tensor>& offsets,
                          const std::vector<int64_t>& num_rows);

// ---- interaction, cross, loss ----------------------------------------------------------------------
void interaction_forward(const Tensor& dense, const Tensor& emb, bool self_interaction, Tensor& out);
void interaction_backward(const Tensor& dense, const Tensor& emb, const Tensor& grad_out, bool self_interaction,
                          Tensor& grad_dense, Tensor& grad_emb);

void cross_forward(const Tensor& x0, const Tensor& x, const CrossWeights& weights, Tensor& y, CrossSaved& saved,
                   DType compute);
void cross_backward(const Tensor& x0, const Tensor& x, const CrossWeights& weights, const CrossSaved& saved,
                    const Tensor& dy, Tensor& dx0, Tensor& dx, CrossGrads& grads, DType compute);

// The mean loss, reduced in double in a fixed order (two passes, no atomics); returns it to the host
// (one sync). bce_with_logits_forward_device leaves it on the device instead: loss [1] fp32.
double bce_with_logits_forward(const Tensor& logits, const Tensor& labels);
void bce_with_logits_forward_device(const Tensor& logits, const Tensor& labels, Tensor& loss);
void bce_with_logits_backward(const Tensor& logits, const Tensor& labels, float scale, Tensor& grad);

// ---- column concat / split (kernels/concat.cu): one launch per 64 parts, no synchronisation ----------
void concat_columns(const std::vector<Tensor>& parts, Tensor& out);
void split_columns(const Tensor& in, const Tensor* addend, const std::vector<Tensor>& parts);
void copy_tensors(const std::vector<Tensor>& src, const std::vector<Tensor>& dst);

}  // namespace rf::cuda
