// End-to-end training on small synthetic data: the model learns the planted signal, the run writes its
// metrics and weights, `recforge eval` on the saved weights reproduces the final evaluation, and bad
// input stops the command with file:line and exit code 2.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>

#include "dataloader/synth.h"
#include "dataloader/tsv_reader.h"
#include "src/config/config.h"
#include "src/train/data_source.h"
#include "src/train/trainer.h"
#include "tests/common/test_support.h"

namespace rf {
namespace {

namespace fs = std::filesystem;

// One small data set for the whole suite (generation is deterministic from the seed).
fs::path data_dir(data::SynthResult* result = nullptr) {
  return test::synth_dataset("train_test", test::small_synth_spec(60000, 20000, 200, 5), result);
}

double planted_auc() {
  data::SynthResult r;
  data_dir(&r);
  return r.planted_auc_test;
}

std::vector<std::string> base_overrides(const fs::path& out) {
  const fs::path d = data_dir();
  return {"--data.train=" + (d / "train.tsv").string(),
          "--data.test=" + (d / "test.tsv").string(),
          "--data.hash_buckets=1000",
          "--model.bottom_mlp=32,8",
          "--model.embedding_dim=8",
          "--model.top_mlp=32,1",
          "--train.batch_size=256",
          "--train.threads=1",
          "--train.eval_every=100",
          "--optimizer.sparse=rowwise_adagrad",
          "--optimizer.lr=0.1",
          "--train.out_dir=" + out.string()};
}

TEST(Trainer, LearnsThePlantedSignalAndWritesItsOutputs) {
  fs::path out = data_dir() / "run";
  Config cfg = Config::load("", base_overrides(out));
  Trainer trainer(cfg);
  TrainSummary s = trainer.run();
  EXPECT_EQ(s.steps, (60000 + 255) / 256);
  EXPECT_EQ(s.samples, 60000);
  ASSERT_TRUE(s.evaluated);
  // Chance is 0.5; the planted model's own AUC is the ceiling. One epoch over 60k rows must get most
  // of the way there (a broken backward or optimizer stays near 0.5).
  EXPECT_GT(s.test.auc, 0.5 + 0.6 * (planted_auc() - 0.5)) << "planted " << planted_auc();
  EXPECT_LE(s.test.auc, planted_auc() + 0.01);
  EXPECT_EQ(s.test.rows, 20000);

  std::string metrics = test::slurp(out / "metrics.jsonl");
  EXPECT_NE(metrics.find("{\"step\": 100,"), std::string::npos) << metrics;
  EXPECT_NE(metrics.find("\"auc\": "), std::string::npos);
  EXPECT_NE(metrics.find("\"logloss\": "), std::string::npos);
  ASSERT_TRUE(fs::exists(out / "params.h5"));

  // A fresh trainer evaluating the saved weights reproduces the final evaluation exactly.
  std::vector<std::string> o = base_overrides(data_dir() / "run_eval");
  o.push_back("--model.init=" + (out / "params.h5").string());
  Config cfg2 = Config::load("", o);
  Trainer evaluator(cfg2);
  data::Batch test = data::load_all(schema_from(cfg2), {(data_dir() / "test.tsv").string()});
  EXPECT_EQ(evaluator.evaluate(test).auc, s.test.auc);
}

TEST(Trainer, SameSeedSameLosses) {
  std::vector<double> losses[2];
  for (int run = 0; run < 2; ++run) {
    std::vector<std::string> o = base_overrides(data_dir() / ("det" + std::to_string(run)));
    Config cfg = Config::load("", o);
    Trainer trainer(cfg);
    data::TsvReader reader(schema_from(cfg), {(data_dir() / "train.tsv").string()});
    data::Batch b;
    for (int i = 0; i < 20 && reader.next(b, 256); ++i) losses[run].push_back(trainer.train_step(b));
  }
  EXPECT_EQ(losses[0], losses[1]);
  EXPECT_LT(losses[0].back(), losses[0].front());
}

// train.bounds_checks=false only skips the GPU's redundant checks; the CPU ops check every index anyway,
// so the CPU step is unchanged, and a bad index is still refused there.
TEST(Trainer, BoundsChecksAndDeterministicKeysLeaveTheCpuStepAlone) {
  std::vector<double> losses[2];
  data::Batch first;
  for (int run = 0; run < 2; ++run) {
    std::vector<std::string> o = base_overrides(data_dir() / ("checks" + std::to_string(run)));
    // train.deterministic=false only changes the GPU's fused embedding update: the CPU step is the same.
    if (run == 1) {
      o.push_back("--train.bounds_checks=false");
      o.push_back("--train.deterministic=false");
    }
    Config cfg = Config::load("", o);
    Trainer trainer(cfg);
    data::TsvReader reader(schema_from(cfg), {(data_dir() / "train.tsv").string()});
    data::Batch b;
    for (int i = 0; i < 5 && reader.next(b, 256); ++i) {
      if (i == 0) first = b;
      losses[run].push_back(trainer.train_step(b));
    }
    if (run == 1) {
      first.indices[0].data<int64_t>()[3] = 1 << 30;
      EXPECT_THROW(trainer.train_step(first), DataError);
    }
  }
  EXPECT_EQ(losses[0], losses[1]);
}

// train.cuda_graph needs a step the host never has to look into: it is refused, naming the key and the
// reason, where that does not hold (here: the CPU device; the GPU cases are in tests/gpu_train).
TEST(Trainer, CudaGraphOnTheCpuIsAConfigError) {
  std::vector<std::string> o = base_overrides(data_dir() / "graph_cpu");
  o.push_back("--train.cuda_graph=true");
  const Config cfg = Config::load("", o);
  try {
    Trainer trainer(cfg);
    FAIL() << "train.cuda_graph=true was accepted on the CPU";
  } catch (const ConfigError& e) {
    EXPECT_NE(std::string(e.what()).find("[train] cuda_graph=true: train.device is cpu"), std::string::npos)
        << e.what();
  }
}

// Runs the recforge binary with `args`.
test::CommandResult run_recforge(const std::string& args) {
  return test::run_command(std::string(RECFORGE_BIN) + " " + args);
}

TEST(TrainCommand, BadRowStopsWithFileLineAndExitCode2) {
  fs::path dir = data_dir();
  fs::path bad = dir / "bad.tsv";
  {
    std::ifstream in(dir / "test.tsv");
    std::ofstream out(bad);
    std::string line;
    for (int i = 0; i < 5 && std::getline(in, line); ++i) out << line << "\n";
    out << "1\t2\t3\n";  // too few fields on line 6
  }
  std::string common = "train --data.train=" + bad.string() + " --data.hash_buckets=100 --model.bottom_mlp=8,4 "
                       "--model.embedding_dim=4 --model.top_mlp=4,1 --train.threads=1 --train.out_dir=" +
                       (dir / "badrun").string();
  test::CommandResult r = run_recforge(common);
  EXPECT_EQ(r.exit_code, 2) << r.output;
  EXPECT_NE(r.output.find(bad.string() + ":6: expected 40 tab-separated fields, got 3"), std::string::npos) << r.output;

  r = run_recforge(common + " --data.skip_bad_rows=true");
  EXPECT_EQ(r.exit_code, 0) << r.output;
  EXPECT_NE(r.output.find("skipped 1 bad row, first at " + bad.string() + ":6"), std::string::npos) << r.output;

  r = run_recforge("train --data.train=" + (dir / "missing.tsv").string());
  EXPECT_EQ(r.exit_code, 2) << r.output;
  EXPECT_NE(r.output.find("missing.tsv' not found"), std::string::npos) << r.output;
}

}  // namespace
}  // namespace rf
