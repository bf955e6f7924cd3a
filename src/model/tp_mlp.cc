// Tensor-parallel MLP (see tp_mlp.h). Shapes per rank with a group of n and a pair (column k, row k+1):
// column weight [out_k / n, in_k], bias [out_k / n], output [batch, out_k / n];
// row weight [out_{k+1}, out_k / n], bias [out_{k+1}] (replicated), output [batch, out_{k+1}].
// The forward's only collective is the row layer's all-reduce, the backward's the column layer's
// input-gradient all-reduce (Megatron's f and g operators).
#include "src/model/tp_mlp.h"

#include <cmath>

#include "kernels/activation.h"
#include "kernels/linear.h"
#include "src/core/error.h"

namespace rf {

TpMlp::TpMlp(std::string prefix, int64_t in_dim, const std::vector<int64_t>& widths, bool relu_last, DType compute,
             ModelParallel* mp)
    : mp_(mp), in_dim_(in_dim), widths_(widths), relu_last_(relu_last), compute_(compute) {
  if (!mp_ || mp_->tp_size() == 1) {
    local_.emplace(prefix, in_dim, widths, relu_last, compute);
    return;
  }
  const int n = mp_->tp_size(), me = mp_->tp_comm().rank();
  const size_t L = widths.size();
  int64_t fan_in = in_dim;
  for (size_t i = 0; i < L; ++i) {
    Layer layer;
    layer.in_full = fan_in;
    layer.out_full = widths[i];
    const bool pair_start = (i % 2 == 0) && i + 1 < L && widths[i] >= n;
    const bool pair_end = i % 2 == 1 && layers_.back().kind == Kind::kColumn;
    layer.kind = pair_start ? Kind::kColumn : pair_end ? Kind::kRow : Kind::kReplicated;
    layer.w.name = prefix + "." + std::to_string(i) + ".weight";
    layer.b.name = prefix + "." + std::to_string(i) + ".bias";
    layer.w.full_rows = layer.out_full;
    layer.w.full_cols = layer.in_full;
    layer.b.full_rows = layer.out_full;
    layer.b.full_cols = 1;
    int64_t out_local = layer.out_full, in_local = layer.in_full;
    if (layer.kind == Kind::kColumn) {
      layer.begin = layer.out_full * me / n;
      layer.end = layer.out_full * (me + 1) / n;
      out_local = layer.end - layer.begin;
      layer.w.sharding = layer.b.sharding = Sharding::kRowSharded;  // split along dim 0
      layer.w.row_begin = layer.b.row_begin = layer.begin;
    } else if (layer.kind == Kind::kRow) {
      layer.begin = layer.in_full * me / n;
      layer.end = layer.in_full * (me + 1) / n;
      in_local = layer.end - layer.begin;
      layer.w.sharding = Sharding::kColumnSharded;  // split along dim 1; the bias is replicated
      layer.w.col_begin = layer.begin;
    }
    layer.w.value = Tensor::zeros({out_local, in_local}, DType::kF32);
    layer.w.grad = Tensor::zeros({out_local, in_local}, DType::kF32);
    layer.b.value = Tensor::zeros({out_local}, DType::kF32);
    layer.b.grad = Tensor::zeros({out_local}, DType::kF32);
    layers_.push_back(std::move(layer));
    fan_in = widths[i];
  }
  // Gathers for checkpoints/exports, registered after layers_ stops moving.
  for (Layer& layer : layers_)
    for (Parameter* p : {&layer.w, &layer.b})
      if (p->sharding != Sharding::kReplicated)
        mp_->register_shard({p->name, &mp_->tp_comm(), p, p->full_rows, p->full_cols, false});
}

void TpMlp::init(InitRng& rng) {
  if (local_) return local_->init(rng);
  for (Layer& layer : layers_) {
    const int64_t out = layer.out_full, in = layer.in_full;
    const double sd_w = std::sqrt(2.0 / static_cast<double>(in + out));
    const double sd_b = std::sqrt(1.0 / static_cast<double>(out));
    float* w = layer.w.value.data<float>();
    const int64_t cols = layer.w.value.size(1);
    for (int64_t i = 0; i < out; ++i)
      for (int64_t j = 0; j < in; ++j) {
        float v = static_cast<float>(rng.normal(0.0, sd_w));
        if (layer.kind == Kind::kColumn) {
          if (i >= layer.begin && i < layer.end) w[(i - layer.begin) * cols + j] = v;
        } else if (layer.kind == Kind::kRow) {
          if (j >= layer.begin && j < layer.end) w[i * cols + (j - layer.begin)] = v;
        } else {
          w[i * cols + j] = v;
        }
      }
    float* b = layer.b.value.data<float>();
    for (int64_t i = 0; i < out; ++i) {
      float v = static_cast<float>(rng.normal(0.0, sd_b));
      if (layer.kind != Kind::kColumn) b[i] = v;
      else if (i >= layer.begin && i < layer.end) b[i - layer.begin] = v;
    }
  }
}

void TpMlp::ensure_buffers(int64_t batch) {
  if (batch == batch_) return;
  outputs_.clear();
  grads_.clear();
  for (const Layer& layer : layers_) {
    const int64_t w = layer.w.value.size(0);
    outputs_.push_back(Tensor::empty({batch, w}, DType::kF32));
    grads_.push_back(Tensor::empty({batch, w}, DType::kF32));
  }
  grad_input_ = Tensor::empty({batch, in_dim_}, DType::kF32);
  batch_ = batch;
}

const Tensor& TpMlp::forward(const Tensor& x) {
  if (local_) return local_->forward(x);
  RF_CHECK(x.dim() == 2 && x.size(1) == in_dim_, "tensor-parallel mlp: input ", shape_str(x.shape()),
           ", expected [batch, ", in_dim_, "]");
  ensure_buffers(x.size(0));
  input_ = x;
  const Tensor* in = &x;
  const size_t n = layers_.size();
  for (size_t i = 0; i < n; ++i) {
    Layer& layer = layers_[i];
    Tensor& y = outputs_[i];
    if (layer.kind == Kind::kRow) {
      // Partial products over this rank's input columns, summed over the group; the bias once.
      linear_forward(*in, layer.w.value, nullptr, y, compute_);
      mp_->tp_comm().all_reduce(y, ReduceOp::kSum);
      float* py = y.data<float>();
      const float* pb = layer.b.value.data<float>();
      const int64_t B = y.size(0), w = y.size(1);
      for (int64_t r = 0; r < B; ++r)
        for (int64_t c = 0; c < w; ++c) py[r * w + c] += pb[c];
    } else {
      linear_forward(*in, layer.w.value, &layer.b.value, y, compute_);
    }
    if (i + 1 < n || relu_last_) relu_forward(y, y);
    in = &y;
  }
  return n == 0 ? input_ : outputs_.back();
}

Tensor TpMlp::backward(const Tensor& dy, bool need_input_grad, const GradReadyHook* hook) {
  if (local_) return local_->backward(dy, need_input_grad, hook);
  const size_t n = layers_.size();
  if (n == 0) return dy;
  Tensor g = dy;
  for (size_t k = n; k-- > 0;) {
    Layer& layer = layers_[k];
    if (k + 1 < n || relu_last_) {
      relu_backward(outputs_[k], g, grads_[k]);
      g = grads_[k];
    }
    const Tensor& in = k == 0 ? input_ : outputs_[k - 1];
    Tensor* dx = nullptr;
    if (k > 0) dx = &grads_[k - 1];
    else if (need_input_grad) dx = &grad_input_;
    linear_backward(in, layer.w.value, g, dx, layer.w.grad, &layer.b.grad, compute_);
    // A column layer's input feeds every rank's slice: its gradient is the sum of the slices' parts.
    if (dx && layer.kind == Kind::kColumn) mp_->tp_comm().all_reduce(*dx, ReduceOp::kSum);
    if (hook && *hook) {
      (*hook)(&layer.w);
      (*hook)(&layer.b);
    }
    if (dx) g = *dx;
  }
  return need_input_grad ? grad_input_ : Tensor();
}

const Tensor& TpMlp::forward_output() const {
  if (local_) return local_->forward_output();
  return layers_.empty() ? input_ : outputs_.back();
}

void TpMlp::collect(ParameterList& out) {
  if (local_) return local_->collect(out);
  for (Layer& layer : layers_) {
    out.push_back(&layer.w);
    out.push_back(&layer.b);
  }
}

}  // namespace rf
