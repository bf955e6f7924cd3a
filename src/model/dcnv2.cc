// DCNv2 forward and backward (see dcnv2.h).
#include "src/model/dcnv2.h"

#include <cmath>

#include "kernels/concat.h"

namespace rf {

namespace {
Parameter make_param(const std::string& name, const Shape& shape) {
  Parameter p;
  p.name = name;
  p.value = Tensor::zeros(shape, DType::kF32);
  p.grad = Tensor::zeros(shape, DType::kF32);
  return p;
}

void fill_normal(Tensor& t, InitRng& rng, double sd) {
  float* p = t.data<float>();
  for (int64_t i = 0; i < t.numel(); ++i) p[i] = static_cast<float>(rng.normal(0.0, sd));
}
}  // namespace

CrossWeights Dcnv2::CrossLayer::weights() const {
  CrossWeights cw;
  cw.w = w.value;
  cw.v = v.value;
  cw.u = u.value;
  cw.b = b.value;
  return cw;
}

Dcnv2::Dcnv2(const ModelConfig& cfg)
    : cfg_(cfg),
      width_(cfg.embedding_dim * (static_cast<int64_t>(cfg.table_sizes.size()) + 1)),
      bottom_("bottom_mlp", cfg.num_dense, cfg.bottom_mlp, /*relu_last=*/true, cfg.compute),
      embeddings_(cfg.table_sizes, cfg.embedding_dim, cfg.pooling, cfg.parallel.get()),  // model parallelism
      top_("top_mlp", width_, cfg.top_mlp, /*relu_last=*/false, cfg.compute, cfg.parallel.get()) {
  cfg.validate();
  for (int64_t l = 0; l < cfg.cross_layers; ++l) {
    std::string prefix = "cross." + std::to_string(l) + ".";
    CrossLayer layer;
    if (cfg.cross_rank > 0) {
      layer.v = make_param(prefix + "v", {cfg.cross_rank, width_});
      layer.u = make_param(prefix + "u", {width_, cfg.cross_rank});
    } else {
      layer.w = make_param(prefix + "weight", {width_, width_});
    }
    layer.b = make_param(prefix + "bias", {width_});
    cross_.push_back(std::move(layer));
  }
  InitRng rng(cfg.seed);
  embeddings_.init(rng);
  bottom_.init(rng);
  // Cross weights Xavier-normal as the linears (sd = sqrt(2 / (fan_in + fan_out))), biases zero, as
  // TorchRec's CrossNet initialises its bias.
  for (CrossLayer& layer : cross_) {
    if (cfg.cross_rank > 0) {
      double sd = std::sqrt(2.0 / static_cast<double>(width_ + cfg.cross_rank));
      fill_normal(layer.v.value, rng, sd);
      fill_normal(layer.u.value, rng, sd);
    } else {
      fill_normal(layer.w.value, rng, std::sqrt(1.0 / static_cast<double>(width_)));
    }
  }
  top_.init(rng);
}

void Dcnv2::forward(const ModelInput& in, Tensor& logits) {
  int64_t batch = in.batch();
  int64_t T = embeddings_.num_tables(), d = embeddings_.dim();
  if (batch != batch_) {
    const Device dev = in.dense.device();  // activations live where the batch and the weights are
    pooled_ = Tensor::empty({batch, T, d}, DType::kF32, dev);
    xs_.clear();
    for (size_t l = 0; l <= cross_.size(); ++l) xs_.push_back(Tensor::empty({batch, width_}, DType::kF32, dev));
    grad_x0_ = Tensor::empty({batch, width_}, DType::kF32, dev);
    grad_x_ = Tensor::empty({batch, width_}, DType::kF32, dev);
    grad_x_next_ = Tensor::empty({batch, width_}, DType::kF32, dev);
    grad_dense_ = Tensor::empty({batch, d}, DType::kF32, dev);
    grad_pooled_ = Tensor::empty({batch, T, d}, DType::kF32, dev);
    batch_ = batch;
  }
  const Tensor& bottom_out = bottom_.forward(in.dense);
  embeddings_.forward(in.indices, in.offsets, pooled_);
  // x0 = [bottom_out, pooled] row by row.
  concat_columns({bottom_out, pooled_.view({batch, T * d})}, xs_[0]);
  for (size_t l = 0; l < cross_.size(); ++l)
    cross_forward(xs_[0], xs_[l], cross_[l].weights(), xs_[l + 1], cross_[l].saved, cfg_.compute);
  const Tensor& out = top_.forward(xs_.back());
  check_shape(logits, {batch}, "logits");
  logits.copy_from(out.view({batch}));
}

void Dcnv2::backward(const ModelInput& in, const Tensor& dlogits) {
  int64_t batch = in.batch();
  int64_t T = embeddings_.num_tables(), d = embeddings_.dim();
  Tensor g = top_.backward(dlogits.view({batch, 1}), /*need_input_grad=*/true, &hook_);
  grad_x0_.fill_zero();
  Tensor* out_buf = &grad_x_;
  for (size_t l = cross_.size(); l-- > 0;) {
    CrossLayer& layer = cross_[l];
    CrossGrads grads;
    grads.w = layer.w.grad;
    grads.v = layer.v.grad;
    grads.u = layer.u.grad;
    grads.b = layer.b.grad;
    cross_backward(xs_[0], xs_[l], layer.weights(), layer.saved, g, grad_x0_, *out_buf, grads, cfg_.compute);
    if (hook_) {
      for (const Parameter* p : {&layer.w, &layer.v, &layer.u, &layer.b})
        if (p->value.defined()) hook_(p);
    }
    g = *out_buf;
    out_buf = out_buf == &grad_x_ ? &grad_x_next_ : &grad_x_;
  }
  // x0 feeds every cross layer and is also x_0 itself: its gradient is the sum of both paths.
  split_columns(g, &grad_x0_, {grad_dense_, grad_pooled_.view({batch, T * d})});
  bottom_.backward(grad_dense_, /*need_input_grad=*/false, &hook_);
  embeddings_.backward(in.indices, in.offsets, grad_pooled_, &embedding_update_);
}

ParameterList Dcnv2::parameters() {
  ParameterList out;
  bottom_.collect(out);
  embeddings_.collect(out);
  for (CrossLayer& layer : cross_) {
    if (layer.w.value.defined()) out.push_back(&layer.w);
    if (layer.v.value.defined()) {
      out.push_back(&layer.v);
      out.push_back(&layer.u);
    }
    out.push_back(&layer.b);
  }
  top_.collect(out);
  return out;
}

}  // namespace rf
