// train.precision on the CPU: a DLRM trained with bf16 compute (oneDNN bf16 GEMMs, fp32 master
// weights) reaches the fp32 run's test AUC on synthetic data, and fp16 is refused when the model is
// built, with a message that says what to use instead.
#include <gtest/gtest.h>

#include <filesystem>

#include "dataloader/synth.h"
#include "src/config/config.h"
#include "src/model/model.h"
#include "src/train/trainer.h"
#include "tests/common/test_support.h"

namespace rf {
namespace {

namespace fs = std::filesystem;

fs::path data_dir(data::SynthResult* result = nullptr) {
  return test::synth_dataset("bf16_test", test::small_synth_spec(32000, 10000, 200, 11), result);
}

std::vector<std::string> overrides(const std::string& precision) {
  const fs::path d = data_dir();
  return {"--data.train=" + (d / "train.tsv").string(),
          "--data.test=" + (d / "test.tsv").string(),
          "--data.hash_buckets=1000",
          "--model.bottom_mlp=64,16",
          "--model.embedding_dim=16",
          "--model.top_mlp=64,32,1",
          "--train.batch_size=128",
          "--train.threads=1",
          "--optimizer.sparse=rowwise_adagrad",
          "--optimizer.lr=0.1",
          "--train.precision=" + precision,
          "--train.out_dir=" + (d / ("run_" + precision)).string()};
}

// 250 steps of 128 (one epoch). bf16 rounds every GEMM operand to 8 significant bits, which perturbs
// the trajectory but not where it goes: the test AUCs must agree to 0.01.
TEST(Bf16Training, DlrmReachesTheFp32Auc) {
  TrainSummary s[2];
  const char* precisions[2] = {"fp32", "bf16"};
  for (int i = 0; i < 2; ++i) {
    const Config cfg = Config::load("", overrides(precisions[i]));  // the trainer keeps a reference
    Trainer trainer(cfg);
    s[i] = trainer.run();
    ASSERT_TRUE(s[i].evaluated) << precisions[i];
  }
  EXPECT_EQ(s[0].steps, 250);
  EXPECT_EQ(s[1].steps, 250);
  // The run learned something (chance is 0.5), so that agreement is not two failures agreeing.
  data::SynthResult synth;
  data_dir(&synth);
  EXPECT_GT(s[0].test.auc, 0.5 + 0.6 * (synth.planted_auc_test - 0.5)) << "planted " << synth.planted_auc_test;
  EXPECT_NEAR(s[1].test.auc, s[0].test.auc, 0.01) << "fp32 " << s[0].test.auc << ", bf16 " << s[1].test.auc;
  // train.precision reached the GEMMs: bf16 rounding changes the losses.
  EXPECT_NE(s[1].last_loss, s[0].last_loss);
  fs::remove_all(data_dir());
}

TEST(Bf16Training, Fp16RefusedAtModelConstruction) {
  ModelConfig mc;
  mc.table_sizes = {10, 20};
  mc.bottom_mlp = {8, 16};
  mc.top_mlp = {8, 1};
  mc.compute = DType::kF16;
  try {
    make_model(mc);
    FAIL() << "fp16 compute was accepted on the CPU";
  } catch (const ConfigError& e) {
    EXPECT_NE(std::string(e.what()).find("train.precision=fp16 needs the CUDA backend; use bf16 or fp32 on the CPU"),
              std::string::npos)
        << e.what();
  }
  mc.compute = DType::kBF16;
  EXPECT_NE(make_model(mc), nullptr);
}

}  // namespace
}  // namespace rf
