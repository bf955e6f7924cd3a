// Checkpoints: resuming from the middle gives bit-identical losses and weights to training straight
// through; a checkpoint interrupted while it is written never loads and resume falls back to the
// previous one; a corrupted file is refused with its name and the failed check.
#include <gtest/gtest.h>

#include <cstring>
#include <filesystem>
#include <fstream>

#include "src/checkpoint/checkpoint.h"
#include "src/io/tensor_file.h"
#include "tests/common/test_support.h"

namespace rf {
namespace {

namespace fs = std::filesystem;

fs::path data_dir() { return test::synth_dataset("ckpt_test", test::small_synth_spec(6000, 1000, 200, 9)); }

// `recforge train args`, with `env` (VAR=value ...) set for it.
test::CommandResult run_recforge(const std::string& args, const std::string& env = "") {
  return test::run_command(env + " " + RECFORGE_BIN + " train " + args);
}

// Adam for the dense layers and row-wise Adagrad for the tables: both carry state that a resume must
// restore exactly. Two epochs of 24 steps, so resuming crosses an epoch boundary too.
std::string common_args(const fs::path& run) {
  fs::path d = data_dir();
  return "--data.train=" + (d / "train.tsv").string() + " --data.test=" + (d / "test.tsv").string() +
         " --data.hash_buckets=500 --model.embedding_dim=8 --model.bottom_mlp=16,8 --model.top_mlp=16,1"
         " --train.batch_size=256 --train.epochs=2 --train.threads=1 --train.eval_every=4"
         " --optimizer.dense=adam --optimizer.lr=0.01 --optimizer.sparse=rowwise_adagrad"
         " --checkpoint.dir=" + (run / "ckpt").string() + " --train.out_dir=" + run.string();
}

std::vector<std::string> lines_after_step(const fs::path& metrics, int64_t step) {
  std::ifstream in(metrics);
  std::vector<std::string> out;
  std::string line;
  while (std::getline(in, line)) {
    int64_t s = std::stoll(line.substr(line.find(':') + 1));
    if (s > step) out.push_back(line);
  }
  return out;
}

void expect_same_params(const fs::path& a, const fs::path& b) {
  auto ta = read_tensors(a.string());
  auto tb = read_tensors(b.string());
  ASSERT_EQ(ta.size(), tb.size());
  for (auto& [name, t] : ta) {
    ASSERT_TRUE(tb.count(name)) << name;
    ASSERT_EQ(t.nbytes(), tb[name].nbytes()) << name;
    EXPECT_EQ(std::memcmp(t.raw(), tb[name].raw(), t.nbytes()), 0) << name << " differs";
  }
}

TEST(Checkpoint, ResumeIsBitExact) {
  fs::path straight = data_dir() / "straight", split = data_dir() / "split";
  test::CommandResult r = run_recforge(common_args(straight));
  ASSERT_EQ(r.exit_code, 0) << r.output;
  // First half: stop after 36 of 48 steps (mid second epoch), with a checkpoint every 12 steps.
  r = run_recforge(common_args(split) + " --train.steps=36 --checkpoint.every=12");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  ASSERT_TRUE(fs::exists(split / "ckpt" / "step-36"));
  // Second half: resume and finish the two epochs.
  r = run_recforge(common_args(split) + " --checkpoint.resume=auto");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_NE(r.output.find("resumed from"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("step 36, epoch 1 batch 12 rows 3072"), std::string::npos) << r.output;

  // Every evaluation after the resume point (AUC, logloss and the training loss) is identical.
  auto a = lines_after_step(straight / "metrics.jsonl", 36);
  auto b = lines_after_step(split / "metrics.jsonl", 36);
  ASSERT_FALSE(a.empty());
  EXPECT_EQ(a, b);
  expect_same_params(straight / "params.h5", split / "params.h5");
  // keep = 3: only the newest three checkpoints remain.
  EXPECT_FALSE(fs::exists(split / "ckpt" / "step-12"));
  EXPECT_TRUE(fs::exists(split / "ckpt" / "step-48"));

  // A checkpoint directory exports for serving like a training out_dir does.
  fs::path exported = split / "from_ckpt.h5";
  r = test::run_command(std::string(RECFORGE_BIN) + " export " + common_args(split) + " --export.checkpoint=" +
                        (split / "ckpt" / "step-48").string() + " --export.out=" + exported.string());
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_TRUE(fs::exists(exported));
}

TEST(Checkpoint, TrainerStateRoundTripsExactly) {
  Parameter w;
  w.name = "w";
  w.value = Tensor::from_vector<float>({1.5f, -2.25f}, {2});
  ParameterList params = {&w};
  Tensor acc = Tensor::from_vector<float>({0.125f, 3.0f}, {2});
  CheckpointContents c;
  c.params = &params;
  c.optimizer_state = {{"dense.sum/w", &acc}};
  c.trainer.step = 7;
  c.trainer.loader_position = "epoch 1 batch 3 rows 768";
  c.trainer.global_batch = 256;
  c.trainer.last_loss = 0.1234567890123;
  c.trainer.loss_scale = 32768.0f;  // fp16 loss scaler: resumes its scale and growth counter exactly
  c.trainer.loss_scale_good_steps = 1234;
  c.trainer.loss_scale_skipped = 5;
  c.trainer.sharding = "embedding_sharding=row tensor_parallel=2";
  c.world_size = 4;
  c.config_dump = "[train]\nbatch_size = 256\n";
  fs::path root = data_dir() / "state";
  std::string dir = save_checkpoint(root.string(), c, 3);

  w.value.fill_zero();
  acc.fill_zero();
  TrainerState ts = load_checkpoint(dir, params, c.optimizer_state);
  EXPECT_EQ(w.value.to_vector<float>(), (std::vector<float>{1.5f, -2.25f}));
  EXPECT_EQ(acc.to_vector<float>(), (std::vector<float>{0.125f, 3.0f}));
  EXPECT_EQ(ts.step, 7);
  EXPECT_EQ(ts.loader_position, "epoch 1 batch 3 rows 768");
  EXPECT_EQ(ts.global_batch, 256);
  EXPECT_EQ(ts.world_size, 4);
  EXPECT_EQ(ts.last_loss, 0.1234567890123);
  EXPECT_EQ(ts.loss_scale, 32768.0f);
  EXPECT_EQ(ts.loss_scale_good_steps, 1234);
  EXPECT_EQ(ts.loss_scale_skipped, 5);
  EXPECT_EQ(ts.sharding, "embedding_sharding=row tensor_parallel=2");
}

TEST(Checkpoint, InterruptedWriteNeverLoads) {
  fs::path run = data_dir() / "killed";
  // Killed while writing the step-24 checkpoint, after its model file and before its manifest.
  test::CommandResult r =
      run_recforge(common_args(run) + " --checkpoint.every=12", "RECFORGE_FAULT_CHECKPOINT=optimizer.h5@24");
  EXPECT_EQ(r.exit_code, 86) << r.output;
  EXPECT_TRUE(fs::exists(run / "ckpt" / "step-12"));
  EXPECT_FALSE(fs::exists(run / "ckpt" / "step-24"));  // only a .tmp directory, never renamed
  std::vector<std::string> warnings;
  auto latest = latest_valid_checkpoint((run / "ckpt").string(), &warnings);
  ASSERT_TRUE(latest.has_value());
  EXPECT_EQ(fs::path(*latest).filename(), "step-12");
  r = run_recforge(common_args(run) + " --checkpoint.resume=auto");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_NE(r.output.find("step 12, epoch 0 batch 12 rows 3072"), std::string::npos) << r.output;
}

TEST(Checkpoint, CorruptFileIsRefusedAndThePreviousOneUsed) {
  fs::path run = data_dir() / "corrupt";
  test::CommandResult r = run_recforge(common_args(run) + " --train.steps=24 --checkpoint.every=12");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  fs::path victim = run / "ckpt" / "step-24" / "optimizer.h5";
  {
    std::fstream f(victim, std::ios::in | std::ios::out | std::ios::binary);
    f.seekp(static_cast<std::streamoff>(fs::file_size(victim) / 2));
    f.put('\x5a');
  }
  try {
    verify_checkpoint((run / "ckpt" / "step-24").string());
    FAIL() << "corrupt checkpoint verified";
  } catch (const DataError& e) {
    EXPECT_NE(std::string(e.what()).find("optimizer.h5: CRC32"), std::string::npos) << e.what();
  }
  r = run_recforge(common_args(run) + " --train.steps=30 --checkpoint.resume=auto");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_NE(r.output.find("refusing checkpoint"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("resumed from " + (run / "ckpt" / "step-12").string()), std::string::npos) << r.output;

  // An explicit path to a corrupt checkpoint is an error, not a silent fallback.
  r = run_recforge(common_args(run) + " --checkpoint.resume=" + (run / "ckpt" / "step-24").string());
  EXPECT_EQ(r.exit_code, 2) << r.output;
  EXPECT_NE(r.output.find("CRC32"), std::string::npos) << r.output;
}

}  // namespace
}  // namespace rf
