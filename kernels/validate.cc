// See validate.h. The messages here are the ones the CPU and CUDA ops have always thrown; tests match
// some of them.
#include "kernels/validate.h"

#include <string>

#include "kernels/interaction.h"

namespace rf::checks {
namespace {

// fp16 compute (and the loss scaling it needs) is CUDA's; the CPU GEMMs run fp32 and bf16.
void check_compute(DType compute, const char* op, Backend backend) {
  if (backend == Backend::kCpu) {
    if (compute == DType::kF32 || compute == DType::kBF16) return;
    if (compute == DType::kF16)
      throw BackendError(std::string(op) +
                         ": fp16 compute has no CPU implementation (train.precision=fp16 needs the CUDA backend; use "
                         "bf16 or fp32 on the CPU)");
  } else if (is_floating(compute)) {
    return;
  }
  throw ShapeError(std::string(op) + ": compute dtype must be fp32, bf16 or fp16, got " + dtype_name(compute));
}

// The tensor dtypes linear takes: fp32 or bf16 on the CPU, any floating type on CUDA.
void check_tensor_dtype(const Tensor& t, const char* what, Backend backend) {
  if (backend == Backend::kCpu) {
    if (t.dtype() != DType::kF32 && t.dtype() != DType::kBF16)
      throw ShapeError(std::string(what) + ": expected dtype fp32 or bf16, got " + dtype_name(t.dtype()));
  } else if (!is_floating(t.dtype())) {
    throw ShapeError(std::string(what) + ": expected fp32, bf16 or fp16, got " + dtype_name(t.dtype()));
  }
}

void check_matrix(const Tensor& t, const char* what) {
  if (t.dim() != 2) throw ShapeError(std::string(what) + ": expected a 2-d tensor, got shape " + shape_str(t.shape()));
}

// compute, x and w as 2-d tensors of one linear-capable dtype; w [out, in].
LinearDims linear_common(const char* op, const Tensor& x, const Tensor& w, DType compute, Backend backend) {
  const std::string o(op);
  check_compute(compute, op, backend);
  check_matrix(x, (o + ": x").c_str());
  check_matrix(w, (o + ": w").c_str());
  check_tensor_dtype(x, (o + ": x").c_str(), backend);
  const LinearDims d{x.size(0), x.size(1), w.size(0)};
  check_shape(w, {d.out, d.in}, (o + ": w").c_str());
  check_dtype(w, x.dtype(), (o + ": w").c_str());
  return d;
}

CrossDims cross_inputs(const char* op, const Tensor& x0, const Tensor& x, const CrossWeights& wt) {
  const std::string o(op);
  check_dtype(x0, DType::kF32, (o + ": x0").c_str());
  check_dtype(x, DType::kF32, (o + ": x").c_str());
  if (x0.dim() != 2) throw ShapeError(o + ": x0: expected [batch, dim], got " + shape_str(x0.shape()));
  CrossDims s{x0.size(0), x0.size(1), 0};
  check_shape(x, {s.batch, s.dim}, (o + ": x").c_str());
  check_shape(wt.b, {s.dim}, (o + ": b").c_str());
  check_dtype(wt.b, DType::kF32, (o + ": b").c_str());
  if (wt.low_rank()) {
    if (wt.v.dim() != 2) throw ShapeError(o + ": v: expected [rank, dim], got " + shape_str(wt.v.shape()));
    s.rank = wt.v.size(0);
    check_shape(wt.v, {s.rank, s.dim}, (o + ": v").c_str());
    check_shape(wt.u, {s.dim, s.rank}, (o + ": u").c_str());
    check_dtype(wt.v, DType::kF32, (o + ": v").c_str());
    check_dtype(wt.u, DType::kF32, (o + ": u").c_str());
  } else {
    check_shape(wt.w, {s.dim, s.dim}, (o + ": w").c_str());
    check_dtype(wt.w, DType::kF32, (o + ": w").c_str());
  }
  return s;
}

InteractionDims interaction_inputs(const char* op, const Tensor& dense, const Tensor& emb, bool self_interaction) {
  const std::string o(op);
  check_dtype(dense, DType::kF32, (o + ": dense").c_str());
  check_dtype(emb, DType::kF32, (o + ": emb").c_str());
  if (dense.dim() != 2) throw ShapeError(o + ": dense: expected [batch, dim], got " + shape_str(dense.shape()));
  if (emb.dim() != 3) throw ShapeError(o + ": emb: expected [batch, tables, dim], got " + shape_str(emb.shape()));
  InteractionDims s{dense.size(0), emb.size(1), dense.size(1), 0};
  check_shape(emb, {s.batch, s.tables, s.dim}, (o + ": emb").c_str());
  s.out_dim = interaction_output_dim(s.tables, s.dim, self_interaction);
  return s;
}

int64_t bce_inputs(const char* op, const Tensor& logits, const Tensor& labels) {
  const std::string o(op);
  check_dtype(logits, DType::kF32, (o + ": logits").c_str());
  check_dtype(labels, DType::kF32, (o + ": labels").c_str());
  if (logits.dim() != 1) throw ShapeError(o + ": logits: expected [batch], got " + shape_str(logits.shape()));
  check_shape(labels, logits.shape(), (o + ": labels").c_str());
  return logits.size(0);
}

}  // namespace

// ---- linear ---------------------------------------------------------------------------------------
LinearDims linear_forward(const Tensor& x, const Tensor& w, const Tensor* b, const Tensor& y, DType compute,
                          Backend backend) {
  const LinearDims d = linear_common("linear_forward", x, w, compute, backend);
  check_shape(y, {d.batch, d.out}, "linear_forward: y");
  check_dtype(y, x.dtype(), "linear_forward: y");
  if (b != nullptr) {
    check_shape(*b, {d.out}, "linear_forward: b");
    check_dtype(*b, DType::kF32, "linear_forward: b");
  }
  return d;
}

LinearDims linear_backward(const Tensor& x, const Tensor& w, const Tensor& dy, const Tensor* dx, const Tensor& dw,
                           const Tensor* db, DType compute, Backend backend) {
  const LinearDims d = linear_common("linear_backward", x, w, compute, backend);
  check_shape(dy, {d.batch, d.out}, "linear_backward: dy");
  check_dtype(dy, x.dtype(), "linear_backward: dy");
  check_shape(dw, {d.out, d.in}, "linear_backward: dw");
  check_dtype(dw, DType::kF32, "linear_backward: dw");
  if (dx != nullptr) {
    check_shape(*dx, {d.batch, d.in}, "linear_backward: dx");
    check_dtype(*dx, x.dtype(), "linear_backward: dx");
  }
  if (db != nullptr) {
    check_shape(*db, {d.out}, "linear_backward: db");
    check_dtype(*db, DType::kF32, "linear_backward: db");
  }
  return d;
}

// ---- cross ----------------------------------------------------------------------------------------
CrossDims cross_forward(const Tensor& x0, const Tensor& x, const CrossWeights& weights, const Tensor& y) {
  const CrossDims s = cross_inputs("cross_forward", x0, x, weights);
  check_shape(y, {s.batch, s.dim}, "cross_forward: y");
  check_dtype(y, DType::kF32, "cross_forward: y");
  return s;
}

CrossDims cross_backward(const Tensor& x0, const Tensor& x, const CrossWeights& weights, const CrossSaved& saved,
                         const Tensor& dy, const Tensor& dx0, const Tensor& dx) {
  const CrossDims s = cross_inputs("cross_backward", x0, x, weights);
  const Shape bd{s.batch, s.dim};
  check_shape(saved.h, bd, "cross_backward: saved.h");
  check_shape(dy, bd, "cross_backward: dy");
  check_dtype(dy, DType::kF32, "cross_backward: dy");
  check_shape(dx0, bd, "cross_backward: dx0");
  check_dtype(dx0, DType::kF32, "cross_backward: dx0");
  check_shape(dx, bd, "cross_backward: dx");
  check_dtype(dx, DType::kF32, "cross_backward: dx");
  return s;
}

// ---- interaction ----------------------------------------------------------------------------------
InteractionDims interaction_forward(const Tensor& dense, const Tensor& emb, bool self_interaction, const Tensor& out) {
  const InteractionDims s = interaction_inputs("interaction_forward", dense, emb, self_interaction);
  check_shape(out, {s.batch, s.out_dim}, "interaction_forward: out");
  check_dtype(out, DType::kF32, "interaction_forward: out");
  return s;
}

InteractionDims interaction_backward(const Tensor& dense, const Tensor& emb, const Tensor& grad_out,
                                     bool self_interaction, const Tensor& grad_dense, const Tensor& grad_emb) {
  const InteractionDims s = interaction_inputs("interaction_backward", dense, emb, self_interaction);
  check_shape(grad_out, {s.batch, s.out_dim}, "interaction_backward: grad_out");
  check_dtype(grad_out, DType::kF32, "interaction_backward: grad_out");
  check_shape(grad_dense, {s.batch, s.dim}, "interaction_backward: grad_dense");
  check_dtype(grad_dense, DType::kF32, "interaction_backward: grad_dense");
  check_shape(grad_emb, {s.batch, s.tables, s.dim}, "interaction_backward: grad_emb");
  check_dtype(grad_emb, DType::kF32, "interaction_backward: grad_emb");
  return s;
}

// ---- embedding bags -------------------------------------------------------------------------------
int64_t embedding_bags(const char* op, const Tensor& indices, const Tensor& offsets, BagCheck backend_check) {
  const std::string o(op);
  check_dtype(indices, DType::kI64, (o + ": indices").c_str());
  check_dtype(offsets, DType::kI64, (o + ": offsets").c_str());
  if (indices.dim() != 1) throw ShapeError(o + ": indices must be 1-d, got shape " + shape_str(indices.shape()));
  if (offsets.dim() != 1 || offsets.size(0) < 1)
    throw ShapeError(o + ": offsets must be 1-d with batch + 1 >= 1 entries, got shape " + shape_str(offsets.shape()));
  const int64_t batch = offsets.size(0) - 1;
  if (backend_check != nullptr) backend_check(op, indices, offsets, batch);
  return batch;
}

int64_t embedding_bag_forward(const Tensor& table, const Tensor& indices, const Tensor& offsets, const Tensor& out,
                              BagCheck backend_check) {
  const char* op = "embedding_bag_forward";
  if (table.dim() != 2 || !is_floating(table.dtype()))
    throw ShapeError(std::string(op) + ": table must be a 2-d fp32/fp16/bf16 tensor, got " +
                     dtype_name(table.dtype()) + shape_str(table.shape()));
  const int64_t batch = embedding_bags(op, indices, offsets, backend_check);
  check_shape(out, {batch, table.size(1)}, "embedding_bag_forward: out");
  check_dtype(out, DType::kF32, "embedding_bag_forward: out");
  return batch;
}

int64_t embedding_bag_backward(const Tensor& indices, const Tensor& offsets, const Tensor& grad_out,
                               BagCheck backend_check) {
  const char* op = "embedding_bag_backward";
  const int64_t batch = embedding_bags(op, indices, offsets, backend_check);
  if (grad_out.dim() != 2 || grad_out.size(0) != batch)
    throw ShapeError(std::string(op) + ": grad_out: expected shape [" + std::to_string(batch) + ", dim], got " +
                     shape_str(grad_out.shape()));
  check_dtype(grad_out, DType::kF32, "embedding_bag_backward: grad_out");
  return batch;
}

namespace {

// The bag lists of T tables with one batch; returns it.
int64_t table_bags(const char* op, const std::vector<Tensor>& indices, const std::vector<Tensor>& offsets,
                   size_t tables, BagCheck backend_check) {
  const std::string o(op);
  if (tables == 0) throw ShapeError(o + ": no tables");
  if (indices.size() != tables || offsets.size() != tables)
    throw ShapeError(o + ": " + std::to_string(tables) + " tables, " + std::to_string(indices.size()) +
                     " index lists and " + std::to_string(offsets.size()) + " offset lists");
  int64_t batch = -1;
  for (size_t t = 0; t < tables; ++t) {
    const std::string name = o + " (table " + std::to_string(t) + ")";
    const int64_t b = embedding_bags(name.c_str(), indices[t], offsets[t], backend_check);
    if (batch >= 0 && b != batch)
      throw ShapeError(name + ": batch " + std::to_string(b) + ", table 0 has " + std::to_string(batch));
    batch = b;
  }
  return batch;
}

}  // namespace

void embedding_tables(const char* op, const std::vector<const Tensor*>& tables) {
  if (tables.empty()) throw ShapeError(std::string(op) + ": no tables");
  const Tensor& first = *tables[0];
  for (size_t t = 0; t < tables.size(); ++t) {
    const Tensor& tab = *tables[t];
    if (tab.dim() != 2 || !is_floating(tab.dtype()))
      throw ShapeError(std::string(op) + ": table " + std::to_string(t) + " must be a 2-d fp32/fp16/bf16 tensor, got " +
                       dtype_name(tab.dtype()) + shape_str(tab.shape()));
    if (tab.dtype() != first.dtype() || tab.size(1) != first.size(1))
      throw ShapeError(std::string(op) + ": table " + std::to_string(t) + " is " + dtype_name(tab.dtype()) +
                       shape_str(tab.shape()) + ", table 0 is " + dtype_name(first.dtype()) + shape_str(first.shape()) +
                       " (one dtype and dim for all)");
  }
}

int64_t embedding_bags_forward(const std::vector<Tensor>& tables, const std::vector<Tensor>& indices,
                               const std::vector<Tensor>& offsets, const Tensor& out, BagCheck backend_check) {
  const char* op = "embedding_bags_forward";
  const int64_t batch = table_bags(op, indices, offsets, tables.size(), backend_check);
  std::vector<const Tensor*> ptrs;
  for (const Tensor& t : tables) ptrs.push_back(&t);
  embedding_tables(op, ptrs);
  const int64_t T = static_cast<int64_t>(tables.size());
  check_shape(out, {batch, T * tables[0].size(1)}, "embedding_bags_forward: out");
  check_dtype(out, DType::kF32, "embedding_bags_forward: out");
  return batch;
}

int64_t embedding_bags_lists(const std::vector<Tensor>& indices, const std::vector<Tensor>& offsets,
                             size_t num_tables, BagCheck backend_check) {
  return table_bags("embedding_bags_forward", indices, offsets, num_tables, backend_check);
}

int64_t embedding_bags_backward(const std::vector<Tensor>& indices, const std::vector<Tensor>& offsets,
                                const Tensor& grad_out, const std::vector<int64_t>& num_rows, BagCheck backend_check) {
  const char* op = "embedding_bags_backward";
  const int64_t batch = table_bags(op, indices, offsets, num_rows.size(), backend_check);
  const int64_t T = static_cast<int64_t>(num_rows.size());
  if (grad_out.dim() != 2 || grad_out.size(0) != batch || grad_out.size(1) % T != 0)
    throw ShapeError(std::string(op) + ": grad_out: expected shape [" + std::to_string(batch) + ", " +
                     std::to_string(T) + " * dim], got " + shape_str(grad_out.shape()));
  check_dtype(grad_out, DType::kF32, "embedding_bags_backward: grad_out");
  for (size_t t = 0; t < num_rows.size(); ++t)
    if (num_rows[t] < 0)
      throw ShapeError(std::string(op) + ": table " + std::to_string(t) + " has " + std::to_string(num_rows[t]) + " rows");
  return batch;
}

// ---- loss -----------------------------------------------------------------------------------------
int64_t bce_with_logits_forward(const Tensor& logits, const Tensor& labels) {
  const int64_t n = bce_inputs("bce_with_logits_forward", logits, labels);
  if (n == 0) throw ShapeError("bce_with_logits_forward: empty batch has no mean loss");
  return n;
}

int64_t bce_with_logits_backward(const Tensor& logits, const Tensor& labels, const Tensor& grad) {
  const int64_t n = bce_inputs("bce_with_logits_backward", logits, labels);
  check_shape(grad, logits.shape(), "bce_with_logits_backward: grad");
  check_dtype(grad, DType::kF32, "bce_with_logits_backward: grad");
  return n;
}

// ---- cast -----------------------------------------------------------------------------------------
void cast(const Tensor& src, const Tensor& dst) {
  if (!is_floating(src.dtype()) || !is_floating(dst.dtype()))
    throw ShapeError(std::string("cast: only fp32/fp16/bf16 are supported, got ") + dtype_name(src.dtype()) +
                     " -> " + dtype_name(dst.dtype()));
  if (src.numel() != dst.numel())
    throw ShapeError("cast: src " + shape_str(src.shape()) + " and dst " + shape_str(dst.shape()) +
                     " hold different element counts");
}

// ---- copy_tensors -----------------------------------------------------------------------------------
void copy_tensors(const std::vector<Tensor>& src, const std::vector<Tensor>& dst) {
  RF_CHECK(src.size() == dst.size(), "copy_tensors: ", src.size(), " sources, ", dst.size(), " destinations");
  for (size_t i = 0; i < src.size(); ++i) {
    RF_CHECK(src[i].defined() && dst[i].defined(), "copy_tensors: pair ", i, " has an undefined tensor");
    if (src[i].dtype() != dst[i].dtype() || src[i].numel() != dst[i].numel())
      throw ShapeError("copy_tensors: pair " + std::to_string(i) + " copies " + dtype_name(src[i].dtype()) +
                       shape_str(src[i].shape()) + " into " + dtype_name(dst[i].dtype()) + shape_str(dst[i].shape()));
  }
}

}  // namespace rf::checks
