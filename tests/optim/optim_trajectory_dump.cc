// Runs one optimizer for 20 steps on random parameters and gradients and writes the whole trajectory
// (initial weights, every gradient and lr, the weights after every step, the final state) to HDF5, for
// tests/python/test_optim_parity.py to replay through torch.optim.
//   optim_trajectory_dump OUT.h5 KIND LR WD EPS BETA1 BETA2 INIT_ACC LR_DECAY SEED
// KIND: sgd | adagrad | adam | adamw (dense) | sparse_sgd | rowwise_adagrad (sparse)
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <random>

#include "src/io/tensor_file.h"
#include "src/optim/optimizer.h"

using namespace rf;

constexpr int64_t kSteps = 20;

int main(int argc, char** argv) {
  if (argc != 11) {
    std::fprintf(stderr, "usage: %s OUT.h5 KIND LR WD EPS BETA1 BETA2 INIT_ACC LR_DECAY SEED\n", argv[0]);
    return 2;
  }
  try {
    const std::string out = argv[1], kind = argv[2];
    OptimizerHyperparams hp;
    const double lr = std::strtod(argv[3], nullptr);
    hp.weight_decay = hp.sparse_weight_decay = std::strtod(argv[4], nullptr);
    hp.eps = std::strtod(argv[5], nullptr);
    hp.beta1 = std::strtod(argv[6], nullptr);
    hp.beta2 = std::strtod(argv[7], nullptr);
    hp.initial_accumulator = std::strtod(argv[8], nullptr);
    hp.lr_decay = std::strtod(argv[9], nullptr);
    std::mt19937 rng(static_cast<unsigned>(std::atoi(argv[10])));
    std::normal_distribution<float> normal(0.0f, 1.0f);
    const bool sparse = kind == "sparse_sgd" || kind == "rowwise_adagrad";
    std::unique_ptr<Optimizer> opt =
        sparse ? make_sparse_optimizer(kind == "sparse_sgd" ? "sgd" : kind, hp) : make_dense_optimizer(kind, hp);

    std::vector<Shape> shapes = sparse ? std::vector<Shape>{{50, 8}} : std::vector<Shape>{{37, 19}, {5}};
    std::vector<Parameter> params(shapes.size());
    NamedTensors dump;
    std::vector<Tensor> grads, trajs;
    for (size_t k = 0; k < shapes.size(); ++k) {
      Parameter& p = params[k];
      p.name = std::string("p") + std::to_string(k);
      p.sparse = sparse;
      p.value = Tensor::empty(shapes[k], DType::kF32);
      for (int64_t i = 0; i < p.value.numel(); ++i) p.value.data<float>()[i] = normal(rng);
      dump.emplace_back(p.name + "/init", p.value.clone());
      Shape hist = shapes[k];
      hist.insert(hist.begin(), kSteps);
      grads.push_back(Tensor::zeros(hist, DType::kF32));
      trajs.push_back(Tensor::zeros(hist, DType::kF32));
    }
    Tensor lrs = Tensor::empty({kSteps}, DType::kF32);
    Tensor mask = Tensor::zeros({kSteps, sparse ? shapes[0][0] : 1}, DType::kI64);
    ParameterList list;
    for (auto& p : params) list.push_back(&p);

    for (int64_t s = 0; s < kSteps; ++s) {
      const float step_lr = static_cast<float>(lr * (1.0 + 0.25 * static_cast<double>(s % 4)));
      lrs.data<float>()[s] = step_lr;
      for (size_t k = 0; k < params.size(); ++k) {
        Parameter& p = params[k];
        const int64_t n = p.value.numel();
        float* g = grads[k].data<float>() + s * n;
        if (!sparse) {
          p.grad = Tensor::empty(p.value.shape(), DType::kF32);
          for (int64_t i = 0; i < n; ++i) g[i] = normal(rng);
          std::memcpy(p.grad.data<float>(), g, static_cast<size_t>(n) * 4);
        } else {
          const int64_t rows = p.value.size(0), dim = p.value.size(1);
          std::vector<int64_t> touched;
          std::vector<float> values;
          for (int64_t r = 0; r < rows; ++r) {
            if (rng() % 3 != 0) continue;  // about a third of the rows each step
            touched.push_back(r);
            mask.data<int64_t>()[s * rows + r] = 1;
            for (int64_t d = 0; d < dim; ++d) {
              float v = normal(rng);
              g[r * dim + d] = v;
              values.push_back(v);
            }
          }
          const int64_t u = static_cast<int64_t>(touched.size());
          p.sparse_grad.rows = Tensor::from_vector(touched, {u});
          p.sparse_grad.values = Tensor::from_vector(values, {u, dim});
        }
      }
      opt->step(list, s, step_lr);
      for (size_t k = 0; k < params.size(); ++k) {
        const int64_t n = params[k].value.numel();
        std::memcpy(trajs[k].data<float>() + s * n, params[k].value.data<float>(), static_cast<size_t>(n) * 4);
      }
    }
    for (size_t k = 0; k < params.size(); ++k) {
      dump.emplace_back(params[k].name + "/grads", grads[k]);
      dump.emplace_back(params[k].name + "/traj", trajs[k]);
    }
    dump.emplace_back("lrs", lrs);
    if (sparse) dump.emplace_back("p0/mask", mask);
    for (auto& [name, t] : opt->state()) dump.emplace_back(std::string("state/").append(name), *t);
    write_tensors(out, dump, {{"optimizer", kind}});
  } catch (const std::exception& e) {
    std::fprintf(stderr, "optim_trajectory_dump: %s\n", e.what());
    return 1;
  }
  return 0;
}
