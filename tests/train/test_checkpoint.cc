// Checkpoints: resuming from the middle gives bit-identical losses and weights to training straight
// through; a checkpoint interrupted while it is written never loads and resume falls back to the
// previous one; a corrupted file is refused with its name and the failed check.
#include <gtest/gtest.h>

#include <sys/wait.h>

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "dataloader/synth.h"
#include "src/checkpoint/checkpoint.h"
#include "src/io/tensor_file.h"

namespace rf {
namespace {

namespace fs = std::filesystem;

fs::path data_dir() {
  static fs::path dir = [] {
    fs::path d = fs::temp_directory_path() / ("rf_ckpt_test_" + std::to_string(getpid()));
    fs::create_directories(d);
    data::SynthSpec spec;
    spec.rows_train = 6000;
    spec.rows_test = 1000;
    spec.min_cardinality = 20;
    spec.max_cardinality = 200;
    spec.seed = 9;
    data::synth_write(spec, (d / "train.tsv").string(), (d / "test.tsv").string());
    return d;
  }();
  return dir;
}

int run_recforge(const std::string& args, std::string* output, const std::string& env = "") {
  std::string cmd = env + " " + RECFORGE_BIN + " train " + args + " 2>&1";
  FILE* p = popen(cmd.c_str(), "r");
  char buf[4096];
  output->clear();
  while (fgets(buf, sizeof buf, p)) *output += buf;
  int status = pclose(p);
  return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
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
  std::string out;
  ASSERT_EQ(run_recforge(common_args(straight), &out), 0) << out;
  // First half: stop after 36 of 48 steps (mid second epoch), with a checkpoint every 12 steps.
  ASSERT_EQ(run_recforge(common_args(split) + " --train.steps=36 --checkpoint.every=12", &out), 0) << out;
  ASSERT_TRUE(fs::exists(split / "ckpt" / "step-36"));
  // Second half: resume and finish the two epochs.
  ASSERT_EQ(run_recforge(common_args(split) + " --checkpoint.resume=auto", &out), 0) << out;
  EXPECT_NE(out.find("resumed from"), std::string::npos) << out;
  EXPECT_NE(out.find("step 36, epoch 1 batch 12 rows 3072"), std::string::npos) << out;

  // Every evaluation after the resume point (AUC, logloss and the training loss) is identical.
  auto a = lines_after_step(straight / "metrics.jsonl", 36);
  auto b = lines_after_step(split / "metrics.jsonl", 36);
  ASSERT_FALSE(a.empty());
  EXPECT_EQ(a, b);
  expect_same_params(straight / "params.h5", split / "params.h5");
  // keep = 3: only the newest three checkpoints remain.
  EXPECT_FALSE(fs::exists(split / "ckpt" / "step-12"));
  EXPECT_TRUE(fs::exists(split / "ckpt" / "step-48"));
}

TEST(Checkpoint, InterruptedWriteNeverLoads) {
  fs::path run = data_dir() / "killed";
  std::string out;
  // Killed while writing the step-24 checkpoint, after its model file and before its manifest.
  EXPECT_EQ(run_recforge(common_args(run) + " --checkpoint.every=12", &out, "RECFORGE_FAULT_CHECKPOINT=optimizer.h5@24"),
            86)
      << out;
  EXPECT_TRUE(fs::exists(run / "ckpt" / "step-12"));
  EXPECT_FALSE(fs::exists(run / "ckpt" / "step-24"));  // only a .tmp directory, never renamed
  std::vector<std::string> warnings;
  auto latest = latest_valid_checkpoint((run / "ckpt").string(), &warnings);
  ASSERT_TRUE(latest.has_value());
  EXPECT_EQ(fs::path(*latest).filename(), "step-12");
  ASSERT_EQ(run_recforge(common_args(run) + " --checkpoint.resume=auto", &out), 0) << out;
  EXPECT_NE(out.find("step 12, epoch 0 batch 12 rows 3072"), std::string::npos) << out;
}

TEST(Checkpoint, CorruptFileIsRefusedAndThePreviousOneUsed) {
  fs::path run = data_dir() / "corrupt";
  std::string out;
  ASSERT_EQ(run_recforge(common_args(run) + " --train.steps=24 --checkpoint.every=12", &out), 0) << out;
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
  ASSERT_EQ(run_recforge(common_args(run) + " --train.steps=30 --checkpoint.resume=auto", &out), 0) << out;
  EXPECT_NE(out.find("refusing checkpoint"), std::string::npos) << out;
  EXPECT_NE(out.find("resumed from " + (run / "ckpt" / "step-12").string()), std::string::npos) << out;

  // An explicit path to a corrupt checkpoint is an error, not a silent fallback.
  EXPECT_EQ(run_recforge(common_args(run) + " --checkpoint.resume=" + (run / "ckpt" / "step-24").string(), &out), 2)
      << out;
  EXPECT_NE(out.find("CRC32"), std::string::npos) << out;
}

}  // namespace
}  // namespace rf
