// Writes parity.h5 for tests/python/test_parity.py: a small seeded DLRM or DCNv2, 20 random batches,
// loss0 and every gradient at the initial weights, then an SGD trajectory (dense and sparse SGD, one
// lr) with each step's loss before its update, and the final weights. Layout: test_parity.py's header.
//
//   parity_dump --model dlrm|dcnv2 [--cross-rank R] [--steps 20] [--batch 32] [--lr 0.1] [--seed 7] --out F
#include <cstdio>
#include <cstdlib>
#include <exception>
#include <random>
#include <string>
#include <vector>

#include "kernels/loss.h"
#include "src/io/tensor_file.h"
#include "src/model/model.h"
#include "src/optim/optimizer.h"

namespace rf {
namespace {

struct Options {
  std::string model = "dlrm";
  int64_t cross_rank = 0;
  int64_t steps = 20;
  int64_t batch = 32;
  double lr = 0.1;
  uint64_t seed = 7;
  std::string out;
};

// Tables sized 20..50 rows; table 0 is multi-hot with bags of 0..3 indices (empty bags included).
const std::vector<int64_t> kTableSizes = {40, 23, 50, 31};
constexpr int64_t kNumDense = 5;
constexpr int64_t kMultiHotTable = 0;

struct HostBatch {
  Tensor labels;                // [B] f32 in {0, 1}
  Tensor dense;                 // [B, num_dense] f32 in [0, 4]
  std::vector<Tensor> indices;  // per table [nnz] i64
  std::vector<Tensor> offsets;  // per table [B + 1] i64
  ModelInput input() const { return {dense, indices, offsets}; }
};

HostBatch random_batch(std::mt19937_64& rng, int64_t batch) {
  std::uniform_real_distribution<float> dense_dist(0.0f, 4.0f);
  std::bernoulli_distribution label_dist(0.4);
  HostBatch b;
  std::vector<float> labels(batch), dense(batch * kNumDense);
  for (auto& y : labels) y = label_dist(rng) ? 1.0f : 0.0f;
  for (auto& x : dense) x = dense_dist(rng);
  b.labels = Tensor::from_vector(labels, {batch});
  b.dense = Tensor::from_vector(dense, {batch, kNumDense});
  for (size_t t = 0; t < kTableSizes.size(); ++t) {
    // Draw from the first 3/4 of each table so that some rows are never touched in the whole run:
    // the checker demands their gradients be zero and their weights bit-identical at the end.
    std::uniform_int_distribution<int64_t> row_dist(0, kTableSizes[t] * 3 / 4 - 1);
    std::uniform_int_distribution<int64_t> count_dist(0, 3);
    std::vector<int64_t> idx, off{0};
    for (int64_t i = 0; i < batch; ++i) {
      int64_t n = static_cast<int64_t>(t) == kMultiHotTable ? count_dist(rng) : 1;
      for (int64_t k = 0; k < n; ++k) idx.push_back(row_dist(rng));
      off.push_back(static_cast<int64_t>(idx.size()));
    }
    b.indices.push_back(Tensor::from_vector(idx, {static_cast<int64_t>(idx.size())}));
    b.offsets.push_back(Tensor::from_vector(off, {batch + 1}));
  }
  return b;
}

// Runs forward, loss and backward; returns the loss.
double forward_backward(Model& model, const HostBatch& b, Tensor& logits, Tensor& dlogits) {
  ModelInput in = b.input();
  model.forward(in, logits);
  double loss = bce_with_logits_forward(logits, b.labels);
  bce_with_logits_backward(logits, b.labels, 1.0f, dlogits);
  model.backward(in, dlogits);
  return loss;
}

// The gradient as a full tensor: an embedding table's sparse gradient scattered into [rows, dim].
Tensor dense_grad(const Parameter& p) {
  if (!p.sparse) return p.grad.clone();
  Tensor g = Tensor::zeros(p.value.shape(), DType::kF32);
  int64_t dim = p.value.size(1);
  const Tensor& rows = p.sparse_grad.rows;
  const float* vals = p.sparse_grad.values.data<float>();
  float* out = g.data<float>();
  for (int64_t i = 0; i < rows.numel(); ++i) {
    int64_t r = rows.data<int64_t>()[i];
    for (int64_t d = 0; d < dim; ++d) out[r * dim + d] += vals[i * dim + d];
  }
  return g;
}

int run(const Options& opt) {
  ModelConfig mc;
  mc.type = opt.model;
  mc.num_dense = kNumDense;
  mc.table_sizes = kTableSizes;
  mc.embedding_dim = 8;
  mc.bottom_mlp = {16, 8};
  mc.top_mlp = {16, 8, 1};
  mc.self_interaction = false;
  mc.cross_layers = opt.model == "dcnv2" ? 2 : 0;
  mc.cross_rank = opt.model == "dcnv2" ? opt.cross_rank : 0;
  mc.pooling = PoolMode::kSum;
  mc.seed = opt.seed;
  mc.validate();
  std::unique_ptr<Model> model = make_model(mc);
  ParameterList params = model->parameters();

  std::mt19937_64 rng(opt.seed);
  std::vector<HostBatch> batches;
  for (int64_t k = 0; k < opt.steps; ++k) batches.push_back(random_batch(rng, opt.batch));

  NamedTensors out;
  for (const Parameter* p : params) out.emplace_back("params/" + p->name, p->value.clone());
  for (int64_t k = 0; k < opt.steps; ++k) {
    const HostBatch& b = batches[static_cast<size_t>(k)];
    std::string g = "batches/" + std::to_string(k) + "/";
    out.emplace_back(g + "labels", b.labels);
    out.emplace_back(g + "dense", b.dense);
    for (size_t t = 0; t < kTableSizes.size(); ++t) {
      out.emplace_back(g + "indices_" + std::to_string(t), b.indices[t]);
      out.emplace_back(g + "offsets_" + std::to_string(t), b.offsets[t]);
    }
  }

  Tensor logits = Tensor::empty({opt.batch}, DType::kF32);
  Tensor dlogits = Tensor::empty({opt.batch}, DType::kF32);
  double loss0 = forward_backward(*model, batches[0], logits, dlogits);
  out.emplace_back("loss0", Tensor::from_vector(std::vector<float>{static_cast<float>(loss0)}, {1}));
  for (const Parameter* p : params) out.emplace_back("grads/" + p->name, dense_grad(*p));

  OptimizerHyperparams hp;
  hp.dense_lr = opt.lr;
  hp.sparse_lr = opt.lr;
  std::unique_ptr<ParamGroupOptimizer> optimizer = make_optimizers("sgd", "sgd", hp);
  optimizer->init_state(params);
  std::vector<float> losses;
  for (int64_t k = 0; k < opt.steps; ++k) {
    losses.push_back(static_cast<float>(forward_backward(*model, batches[static_cast<size_t>(k)], logits, dlogits)));
    optimizer->step(params, k, 1.0);
  }
  out.emplace_back("losses", Tensor::from_vector(losses, {opt.steps}));
  for (const Parameter* p : params) out.emplace_back("final_params/" + p->name, p->value.clone());

  FileAttrs attrs;
  attrs.strings = {{"model_type", mc.type},
                   {"pooling", mc.pooling == PoolMode::kSum ? "sum" : "mean"},
                   {"dense_optimizer", "sgd"},
                   {"sparse_optimizer", "sgd"}};
  attrs.ints = {{"embedding_dim", mc.embedding_dim}, {"num_dense", mc.num_dense},
                {"self_interaction", mc.self_interaction ? 1 : 0}, {"cross_layers", mc.cross_layers},
                {"cross_rank", mc.cross_rank}, {"steps", opt.steps}, {"seed", static_cast<int64_t>(opt.seed)}};
  attrs.int_lists = {{"bottom_mlp", mc.bottom_mlp}, {"top_mlp", mc.top_mlp}, {"table_sizes", mc.table_sizes}};
  attrs.floats = {{"lr", opt.lr}};
  write_tensors_with_attrs(opt.out, out, attrs);
  std::printf("wrote %s: %s (cross_rank %lld), %lld steps, batch %lld, loss %.6f -> %.6f\n", opt.out.c_str(),
              mc.type.c_str(), static_cast<long long>(mc.cross_rank), static_cast<long long>(opt.steps),
              static_cast<long long>(opt.batch), losses.front(), losses.back());
  return 0;
}

}  // namespace
}  // namespace rf

int main(int argc, char** argv) {
  rf::Options opt;
  auto usage = [&]() {
    std::fprintf(stderr,
                 "usage: %s --model dlrm|dcnv2 [--cross-rank R] [--steps N] [--batch B] [--lr LR] [--seed S] "
                 "--out parity.h5\n",
                 argv[0]);
    return 2;
  };
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    if (i + 1 >= argc) return usage();
    std::string v = argv[++i];
    if (a == "--model") opt.model = v;
    else if (a == "--cross-rank") opt.cross_rank = std::atoll(v.c_str());
    else if (a == "--steps") opt.steps = std::atoll(v.c_str());
    else if (a == "--batch") opt.batch = std::atoll(v.c_str());
    else if (a == "--lr") opt.lr = std::atof(v.c_str());
    else if (a == "--seed") opt.seed = std::strtoull(v.c_str(), nullptr, 10);
    else if (a == "--out") opt.out = v;
    else return usage();
  }
  if (opt.out.empty() || (opt.model != "dlrm" && opt.model != "dcnv2") || opt.steps < 1 || opt.batch < 1)
    return usage();
  try {
    return rf::run(opt);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "parity_dump: %s\n", e.what());
    return 1;
  }
}
