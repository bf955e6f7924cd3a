// Short training runs on synthetic data: the GPU reaches the CPU's test AUC in fp32, and in bf16 and
// fp16 (dynamic loss scaling) within a margin; an fp16 step with a planted inf gradient is skipped by
// the loss scaler (weights untouched, scale halved). Skips without a GPU.
#include <gtest/gtest.h>

#include <cmath>
#include <filesystem>
#include <limits>

#include "dataloader/synth.h"
#include "kernels/loss_scaler.h"
#include "src/config/config.h"
#include "src/optim/optimizer.h"
#include "src/train/trainer.h"
#include "tests/common/test_support.h"
#include "tests/gpu_train/gpu_train_util.h"

namespace rf {
namespace {

namespace fs = std::filesystem;

const fs::path& synth_dir() {
  static fs::path dir = [] {
    fs::path d = test::process_dir("gpu_train_test");
    data::SynthSpec spec;
    spec.rows_train = 40000;
    spec.rows_test = 10000;
    spec.min_cardinality = 20;
    spec.max_cardinality = 200;
    spec.seed = 9;
    data::synth_write(spec, (d / "train.tsv").string(), (d / "test.tsv").string());
    return d;
  }();
  return dir;
}

Config run_config(const std::string& name, const std::string& device, const std::string& precision,
                  const std::string& type = "dlrm") {
  const fs::path& d = synth_dir();
  return Config::load("", {"--data.train=" + (d / "train.tsv").string(), "--data.test=" + (d / "test.tsv").string(),
                           "--data.hash_buckets=1000", "--model.type=" + type, "--model.bottom_mlp=32,8",
                           "--model.embedding_dim=8", "--model.top_mlp=32,1", "--model.cross_layers=2",
                           "--train.batch_size=256", "--train.threads=4", "--optimizer.sparse=rowwise_adagrad",
                           "--optimizer.lr=0.1", "--train.device=" + device, "--train.precision=" + precision,
                           "--train.out_dir=" + (d / name).string()});
}

double trained_auc(const Config& cfg) {
  Trainer trainer(cfg);
  TrainSummary s = trainer.run();
  EXPECT_TRUE(s.evaluated);
  return s.test.auc;
}

TEST(GpuTrain, ReachesTheCpuAucInEveryPrecision) {
  RF_REQUIRE_GPU();
  for (const std::string type : {"dlrm", "dcnv2"}) {
    SCOPED_TRACE(type);
    const double cpu = trained_auc(run_config(type + "_cpu", "cpu", "fp32", type));
    ASSERT_GT(cpu, 0.65) << "the CPU run itself did not learn the planted signal (chance is 0.5)";
    // fp32: the same computation up to fp32 summation order, one epoch of ~160 steps: 0.005 AUC.
    EXPECT_NEAR(trained_auc(run_config(type + "_gpu_fp32", "cuda", "fp32", type)), cpu, 0.005);
    // bf16 / fp16 GEMM operands (8 / 11 significant bits) change every step a little; test_bf16 allows
    // the CPU bf16 run 0.01 against fp32, the same margin here.
    EXPECT_NEAR(trained_auc(run_config(type + "_gpu_bf16", "cuda", "bf16", type)), cpu, 0.01);
    EXPECT_NEAR(trained_auc(run_config(type + "_gpu_fp16", "cuda", "fp16", type)), cpu, 0.01);
  }
}

TEST(GpuTrain, LossScalerSkipsAStepWithAPlantedOverflow) {
  RF_REQUIRE_GPU();
  Config cfg = run_config("scaler", "cuda", "fp16");
  ModelConfig mc = test::small_model("dlrm", Device::cuda(0), DType::kF16);
  Trainer trainer(cfg, mc);
  ASSERT_NE(trainer.loss_scaler(), nullptr);
  const data::Batch batch = test::random_batch(mc, 128, 21);
  trainer.train_step(batch);  // an ordinary step: applied
  EXPECT_EQ(trainer.loss_scaler()->skipped_steps(), 0);
  const float scale = trainer.loss_scaler()->scale();

  // The hook runs right after each dense gradient is written: plant an inf in the first one.
  bool plant = true;
  trainer.model().set_grad_ready_hook([&](const Parameter* p) {
    if (!plant) return;
    Tensor g = p->grad;
    Tensor host = g.to(Device::cpu());
    host.data<float>()[0] = std::numeric_limits<float>::infinity();
    g.copy_from(host);
    plant = false;
  });
  std::vector<std::vector<float>> before;
  for (Parameter* p : trainer.model().parameters()) before.push_back(p->value.to_vector<float>());
  trainer.train_step(batch);
  EXPECT_FALSE(plant) << "the hook never ran";
  EXPECT_EQ(trainer.loss_scaler()->skipped_steps(), 1);
  EXPECT_EQ(trainer.loss_scaler()->scale(), scale * 0.5f);  // backoff_factor 0.5
  ParameterList after = trainer.model().parameters();
  for (size_t i = 0; i < after.size(); ++i)
    EXPECT_EQ(after[i]->value.to_vector<float>(), before[i]) << after[i]->name << " changed in a skipped step";

  trainer.model().set_grad_ready_hook({});
  trainer.train_step(batch);  // back to normal: applied, nothing more skipped
  EXPECT_EQ(trainer.loss_scaler()->skipped_steps(), 1);
  EXPECT_NE(trainer.model().parameters()[0]->value.to_vector<float>(), before[0]);
}

// The tables updated inside the backward (one fused sort + update for all tables, the default on one
// GPU without loss scaling) against the SparseGrad path (train.fused_embedding_update=false): the same
// sums in the same order, so 6 steps of each sparse optimizer give bit-identical losses and parameters,
// with a learning-rate warm-up so that the fused update must take each step's scheduled rate.
TEST(GpuTrain, FusedEmbeddingUpdateEqualsTheSparseGradPath) {
  RF_REQUIRE_GPU();
  for (const std::string sparse : {"sgd", "rowwise_adagrad"})
    for (const std::string type : {"dlrm", "dcnv2"}) {
      SCOPED_TRACE(sparse + " " + type);
      const Config base = run_config("fused", "cuda", "bf16", type)
                              .with_overrides({"--optimizer.sparse=" + sparse, "--optimizer.warmup_steps=4"});
      ModelConfig mc = test::small_model(type, Device::cuda(0), DType::kBF16);
      Trainer fused(base, mc), plain(base.with_overrides({"--train.fused_embedding_update=false"}), mc);
      for (int step = 0; step < 6; ++step) {
        const data::Batch batch = test::random_batch(mc, 96, 300 + static_cast<uint64_t>(step));
        EXPECT_EQ(fused.train_step(batch), plain.train_step(batch)) << "step " << step;
      }
      ParameterList pf = fused.model().parameters(), pp = plain.model().parameters();
      ASSERT_EQ(pf.size(), pp.size());
      bool saw_table = false;
      for (size_t i = 0; i < pf.size(); ++i) {
        EXPECT_EQ(pf[i]->value.to_vector<float>(), pp[i]->value.to_vector<float>()) << pf[i]->name;
        if (!pf[i]->sparse) continue;
        saw_table = true;
        // Which path ran: the fused one leaves no sparse gradient behind, the other one does.
        EXPECT_FALSE(pf[i]->sparse_grad.rows.defined()) << pf[i]->name;
        EXPECT_TRUE(pp[i]->sparse_grad.rows.defined()) << pp[i]->name;
      }
      EXPECT_TRUE(saw_table);
    }
}

// train.deterministic=false: the fused embedding update hashes the lookups and adds a row's gradients with
// float atomics. Six steps (eager, and replayed from a CUDA graph) follow the sorted path's trainer to
// fp32 reassociation error: rows looked up more than once get their gradient sums in another order (a
// few ulps of a sum of a few terms); bf16 GEMMs then carry that into the next steps' activations, so the
// weights are compared with the bf16 model's tolerance.
TEST(GpuTrain, HashedEmbeddingUpdateFollowsTheSortedOne) {
  RF_REQUIRE_GPU();
  for (const std::string sparse : {"sgd", "rowwise_adagrad"})
    for (const std::string graph : {"false", "true"}) {
      SCOPED_TRACE(sparse + " cuda_graph=" + graph);
      const Config base = run_config("hashed", "cuda", "bf16", "dlrm")
                              .with_overrides({"--optimizer.sparse=" + sparse, "--optimizer.warmup_steps=4"});
      ModelConfig mc = test::small_model("dlrm", Device::cuda(0), DType::kBF16);
      Trainer hashed(base.with_overrides({"--train.deterministic=false", "--train.cuda_graph=" + graph}), mc),
          sorted(base, mc);
      for (int step = 0; step < 6; ++step) {
        const data::Batch batch = test::random_batch(mc, 96, 500 + static_cast<uint64_t>(step), /*bag=*/2);
        const double h = hashed.train_step(batch), s = sorted.train_step(batch);
        EXPECT_NEAR(h, s, 1e-3 * std::fabs(s)) << "step " << step;
      }
      if (graph == "true") {
        EXPECT_EQ(hashed.cuda_graph_replays(), 5);  // step 0 runs eagerly
      }
      ParameterList ph = hashed.model().parameters(), ps = sorted.model().parameters();
      ASSERT_EQ(ph.size(), ps.size());
      for (size_t i = 0; i < ph.size(); ++i) {
        const std::vector<float> a = ph[i]->value.to_vector<float>(), b = ps[i]->value.to_vector<float>();
        ASSERT_EQ(a.size(), b.size());
        double worst = 0;
        for (size_t k = 0; k < a.size(); ++k) worst = std::max(worst, static_cast<double>(std::fabs(a[k] - b[k])));
        EXPECT_LT(worst, 2e-3) << ph[i]->name;
      }
    }
}

// train.cuda_graph replays the captured step with each step's learning rate and bias corrections read
// from the device: the same kernels in the same order as the eager step, so the weights must come out
// bit for bit the same. The reported loss is the fp32 rounding of the eager step's double mean.
TEST(GpuTrain, CudaGraphStepsEqualEagerSteps) {
  RF_REQUIRE_GPU();
  struct Case {
    std::string type, dense, sparse, precision, bounds_checks;
  };
  for (const Case& c : {Case{"dlrm", "adam", "rowwise_adagrad", "bf16", "true"},
                        Case{"dcnv2", "adamw", "sgd", "fp32", "false"}, Case{"dlrm", "adagrad", "sgd", "fp32", "true"},
                        Case{"dcnv2", "sgd", "rowwise_adagrad", "bf16", "false"}}) {
    SCOPED_TRACE(c.type + " " + c.dense + " " + c.sparse + " " + c.precision + " bounds_checks=" + c.bounds_checks);
    // Warm-up then decay: the learning rate changes every step, so a scalar baked into the graph shows.
    const Config base = run_config("graph", "cuda", c.precision, c.type)
                            .with_overrides({"--optimizer.dense=" + c.dense, "--optimizer.sparse=" + c.sparse,
                                             "--optimizer.weight_decay=0.01", "--optimizer.warmup_steps=3",
                                             "--optimizer.decay=linear", "--optimizer.decay_start=4",
                                             "--optimizer.decay_steps=20", "--train.bounds_checks=" + c.bounds_checks});
    ModelConfig mc = test::small_model(c.type, Device::cuda(0), c.precision == "bf16" ? DType::kBF16 : DType::kF32);
    Trainer graph(base.with_overrides({"--train.cuda_graph=true"}), mc), eager(base, mc);
    // Step 0 runs eagerly (warm-up), step 1 is captured and replayed, step 5's shorter batch runs
    // eagerly again (the device scalars are then read by eager launches), the others replay.
    const int64_t rows[] = {96, 96, 96, 96, 96, 40, 96, 96};
    for (int step = 0; step < 8; ++step) {
      const data::Batch batch = test::random_batch(mc, rows[step], 700 + static_cast<uint64_t>(step), /*bag=*/2);
      const double e = eager.train_step(batch);
      const double g = graph.train_step(batch);
      // fp32 rounding of the same double: half an fp32 ulp (2^-24 relative).
      EXPECT_NEAR(g, e, std::ldexp(std::fabs(e), -24)) << "step " << step;
    }
    EXPECT_EQ(graph.cuda_graph_replays(), 6);
    EXPECT_EQ(eager.cuda_graph_replays(), 0);
    ParameterList pg = graph.model().parameters(), pe = eager.model().parameters();
    ASSERT_EQ(pg.size(), pe.size());
    for (size_t i = 0; i < pg.size(); ++i)
      EXPECT_EQ(pg[i]->value.to_vector<float>(), pe[i]->value.to_vector<float>()) << pg[i]->name;
    auto sg = graph.optimizer().state(), se = eager.optimizer().state();
    ASSERT_EQ(sg.size(), se.size());
    for (size_t i = 0; i < sg.size(); ++i)
      EXPECT_EQ(sg[i].second->to_vector<float>(), se[i].second->to_vector<float>()) << sg[i].first;
  }
}

// The captured step cannot stop for the device's bounds checks: a bad index must be refused on the host,
// with the same message, before anything is copied or replayed.
TEST(GpuTrain, CudaGraphRefusesABadIndexBeforeTheStep) {
  RF_REQUIRE_GPU();
  const Config cfg = run_config("graph_bad", "cuda", "fp32").with_overrides({"--train.cuda_graph=true"});
  ModelConfig mc = test::small_model("dlrm", Device::cuda(0), DType::kF32);
  Trainer trainer(cfg, mc);
  for (int step = 0; step < 3; ++step)
    trainer.train_step(test::random_batch(mc, 64, 40 + static_cast<uint64_t>(step), /*bag=*/2));
  ASSERT_EQ(trainer.cuda_graph_replays(), 2);
  std::vector<std::vector<float>> before;
  for (Parameter* p : trainer.model().parameters()) before.push_back(p->value.to_vector<float>());
  data::Batch bad = test::random_batch(mc, 64, 50, /*bag=*/2);
  bad.indices[1].data<int64_t>()[35] = mc.table_sizes[1];  // one past the end of table 1, in bag 17
  try {
    trainer.train_step(bad);
    FAIL() << "a bad index went through";
  } catch (const DataError& e) {
    EXPECT_NE(std::string(e.what()).find("table 1"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("bag 17"), std::string::npos) << e.what();
  }
  EXPECT_EQ(trainer.cuda_graph_replays(), 2);
  size_t i = 0;
  for (Parameter* p : trainer.model().parameters()) EXPECT_EQ(p->value.to_vector<float>(), before[i++]) << p->name;
  // The graph is still good for the next batch.
  EXPECT_TRUE(std::isfinite(trainer.train_step(test::random_batch(mc, 64, 51, /*bag=*/2))));
  EXPECT_EQ(trainer.cuda_graph_replays(), 3);
}

}  // namespace
}  // namespace rf
