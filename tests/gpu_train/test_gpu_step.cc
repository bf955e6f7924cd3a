// One whole training step of DLRM and DCNv2 on the GPU against the same step on the CPU: same seed
// (hence the same weights), same batch; logits, loss, every dense gradient, every table's sparse
// gradient, and the weights after one SGD and one Adagrad (+ row-wise Adagrad) step.
// fp32 compute with TF32 off (the CUDA backend's default). Skips without a GPU.
#include <gtest/gtest.h>

#include "kernels/loss.h"
#include "src/optim/device_optimizer.h"
#include "src/optim/optimizer.h"
#include "src/train/data_source.h"
#include "tests/gpu_train/gpu_train_util.h"

namespace rf {
namespace {

using test::Tol;

// Forward values: fp32 GEMMs summed in another order (cuBLASLt's kernels vs OpenBLAS's blocking) over
// K <= 48, through 2-3 layers: a few ulps, far below 1e-5 for O(1) activations.
constexpr Tol kForwardTol{1e-5, 1e-4};
// Gradients: the same reordering in three GEMMs per layer plus batch reductions of 64 rows (db, dw).
constexpr Tol kGradTol{1e-6, 1e-4};
// Weights after one step: lr * (gradient error) on top of identical starting weights; Adagrad and
// row-wise Adagrad divide by sqrt(acc + g^2) (acc starts at 0.01, so the division stays tame), hence
// only a slightly wider tolerance for them.
constexpr Tol kSgdWeightTol{1e-7, 1e-5};
constexpr Tol kAdaptiveWeightTol{2e-5, 1e-4};

struct Step {
  std::unique_ptr<Model> model;
  double loss = 0;
  Tensor logits;
};

Step run_step(const ModelConfig& mc, const data::Batch& host_batch) {
  Step s;
  s.model = make_model(mc);
  const data::Batch b = data::batch_to(host_batch, mc.device);
  const int64_t n = b.size();
  s.logits = Tensor::empty({n}, DType::kF32, mc.device);
  Tensor dlogits = Tensor::empty({n}, DType::kF32, mc.device);
  ModelInput in = model_input(b);
  s.model->forward(in, s.logits);
  s.loss = bce_with_logits_forward(s.logits, b.labels);
  bce_with_logits_backward(s.logits, b.labels, 1.0f, dlogits);
  s.model->backward(in, dlogits);
  return s;
}

void expect_same_step(const std::string& type) {
  const data::Batch batch = test::random_batch(test::small_model(type, Device::cpu()), 64, 3);
  Step cpu = run_step(test::small_model(type, Device::cpu()), batch);
  Step gpu = run_step(test::small_model(type, Device::cuda(0)), batch);
  EXPECT_TRUE(test::close(gpu.logits, cpu.logits, kForwardTol)) << "logits";
  // The loss: a mean of 64 terms reduced in double on both sides from logits within kForwardTol.
  EXPECT_NEAR(gpu.loss, cpu.loss, 1e-5 + 1e-5 * std::fabs(cpu.loss));
  ParameterList pc = cpu.model->parameters(), pg = gpu.model->parameters();
  ASSERT_EQ(pc.size(), pg.size());
  for (size_t i = 0; i < pc.size(); ++i) {
    SCOPED_TRACE(pc[i]->name);
    ASSERT_EQ(pc[i]->name, pg[i]->name);
    ASSERT_TRUE(pg[i]->value.device().is_cuda());
    // Initialised on the host from one seed and copied: identical bits.
    EXPECT_EQ(pg[i]->value.to_vector<float>(), pc[i]->value.to_vector<float>()) << "initial weights";
    if (pc[i]->sparse) {
      EXPECT_EQ(pg[i]->sparse_grad.rows.to_vector<int64_t>(), pc[i]->sparse_grad.rows.to_vector<int64_t>());
      EXPECT_TRUE(test::close(pg[i]->sparse_grad.values, pc[i]->sparse_grad.values, kGradTol)) << "sparse grad";
    } else {
      EXPECT_TRUE(test::close(pg[i]->grad, pc[i]->grad, kGradTol)) << "dense grad";
    }
  }
  // One optimizer step from the (near-)equal gradients, for each pair of optimizers.
  struct Case {
    const char *dense, *sparse;
    Tol tol;
  };
  // Not Adam here: its first step is lr * g / |g|, so a gradient element within rounding of zero may
  // flip sign between devices and move its weight by 2 * lr (tests/kernels checks the Adam kernel).
  for (const Case& c : {Case{"sgd", "sgd", kSgdWeightTol}, Case{"adagrad", "rowwise_adagrad", kAdaptiveWeightTol}}) {
    SCOPED_TRACE(std::string(c.dense) + " + " + c.sparse);
    OptimizerHyperparams hp;
    hp.dense_lr = 0.05;
    hp.sparse_lr = 0.1;
    hp.initial_accumulator = 0.01;
    // Fresh copies of the stepped models' weights, so each optimizer starts from the same point.
    std::vector<Tensor> wc, wg;
    for (size_t i = 0; i < pc.size(); ++i) {
      wc.push_back(pc[i]->value.clone());
      wg.push_back(pg[i]->value.clone());
    }
    auto oc = make_optimizers(c.dense, c.sparse, hp);
    auto og = make_device_optimizers(c.dense, c.sparse, hp);
    oc->init_state(pc);
    og->init_state(pg);
    oc->step(pc, 0, 1.0);
    og->step(pg, 0, 1.0);
    // Same state names as the CPU optimizers (checkpoints move between devices).
    auto sc = oc->state(), sg = og->state();
    ASSERT_EQ(sc.size(), sg.size());
    for (size_t k = 0; k < sc.size(); ++k) {
      EXPECT_EQ(sc[k].first, sg[k].first);
      EXPECT_TRUE(sg[k].second->device().is_cuda());
    }
    for (size_t i = 0; i < pc.size(); ++i) {
      EXPECT_TRUE(test::close(pg[i]->value, pc[i]->value, c.tol)) << pc[i]->name << " after one step";
      pc[i]->value.copy_from(wc[i]);
      pg[i]->value.copy_from(wg[i]);
    }
  }
}

TEST(GpuStep, DlrmMatchesCpu) {
  RF_REQUIRE_GPU();
  expect_same_step("dlrm");
}

TEST(GpuStep, Dcnv2MatchesCpu) {
  RF_REQUIRE_GPU();
  expect_same_step("dcnv2");
}

TEST(GpuStep, ModelConfigRefusesFp16OnTheCpuOnly) {
  ModelConfig m = test::small_model("dlrm", Device::cpu(), DType::kF16);
  EXPECT_THROW(m.validate(), ConfigError);
  m.device = Device::cuda(0);
  EXPECT_NO_THROW(m.validate());  // fp16 GEMM operands are the CUDA backend's
  EXPECT_EQ(parse_device("cuda:1"), Device::cuda(1));
  EXPECT_EQ(parse_device("cpu"), Device::cpu());
  EXPECT_THROW(parse_device("gpu"), ConfigError);
}

}  // namespace
}  // namespace rf
