// Data parallelism end to end: `recforge train` under mpirun with 2 and 4 ranks at per-rank batch b
// follows the same loss trajectory and ends at the same weights as 1 rank at batch N*b, and one rank
// raising mid-training ends every rank with a non-zero exit within seconds.
#include <gtest/gtest.h>

#include <chrono>
#include <cmath>
#include <cstring>
#include <filesystem>

#include "src/io/tensor_file.h"
#include "tests/common/test_support.h"

namespace rf {
namespace {

namespace fs = std::filesystem;

fs::path data_dir() { return test::synth_dataset("dp_test", test::small_synth_spec(8192, 2000, 300, 21)); }

std::string train_cmd(int ranks, const fs::path& out, const std::string& extra = "") {
  fs::path d = data_dir();
  return std::string(MPIEXEC) + " --allow-run-as-root --oversubscribe -np " + std::to_string(ranks) + " " +
         RECFORGE_BIN + " train --data.train=" + (d / "train.tsv").string() + " --data.test=" +
         (d / "test.tsv").string() +
         " --data.hash_buckets=400 --model.embedding_dim=8 --model.bottom_mlp=16,8 --model.top_mlp=16,1"
         " --train.batch_size=512 --train.threads=1 --train.eval_every=2 --optimizer.dense=adagrad"
         " --optimizer.lr=0.05 --optimizer.sparse=rowwise_adagrad --train.out_dir=" + out.string() + " " + extra;
}

TEST(DataParallel, RanksMatchOneRankAtTheGlobalBatch) {
  fs::path one = data_dir() / "np1";
  test::CommandResult r = test::run_command(train_cmd(1, one));
  ASSERT_EQ(r.exit_code, 0) << r.output;
  std::vector<double> ref = test::train_losses(one / "metrics.jsonl");
  ASSERT_EQ(ref.size(), 9u);  // 16 steps, evaluated every 2, plus the final evaluation
  auto ref_params = read_tensors((one / "params.h5").string());
  for (int ranks : {2, 4}) {
    fs::path dir = data_dir() / ("np" + std::to_string(ranks));
    r = test::run_command(train_cmd(ranks, dir));
    ASSERT_EQ(r.exit_code, 0) << r.output;
    std::vector<double> losses = test::train_losses(dir / "metrics.jsonl");
    ASSERT_EQ(losses.size(), ref.size());
    // fp32: N ranks sum their rows' gradients separately and MPI adds the N partial sums, a different
    // summation order than one rank's; each step differs by rounding (~1e-7 relative), which the
    // optimizer carries forward. 1e-5 relative leaves room for 16 steps of that and no more.
    for (size_t i = 0; i < ref.size(); ++i)
      EXPECT_NEAR(losses[i], ref[i], 1e-5 * std::fabs(ref[i])) << ranks << " ranks, evaluation " << i;
    auto params = read_tensors((dir / "params.h5").string());
    ASSERT_EQ(params.size(), ref_params.size());
    for (auto& [name, t] : ref_params) {
      const float* a = t.data<float>();
      const float* b = params.at(name).data<float>();
      double diff = 0, norm = 0;
      for (int64_t i = 0; i < t.numel(); ++i) {
        diff += (double(a[i]) - b[i]) * (double(a[i]) - b[i]);
        norm += double(a[i]) * a[i];
      }
      // Same reason as above: rounding-level differences accumulated over 16 Adagrad steps.
      EXPECT_LE(std::sqrt(diff), 1e-5 * std::sqrt(norm) + 1e-7) << ranks << " ranks, " << name;
    }
  }
}

TEST(DataParallel, TwoRankResumeIsBitExactAndAnotherWorldSizeResumes) {
  fs::path straight = data_dir() / "ck_straight", split = data_dir() / "ck_split";
  std::string ck_straight = " --checkpoint.dir=" + (straight / "ckpt").string();
  std::string ck_split = " --checkpoint.dir=" + (split / "ckpt").string();
  test::CommandResult r = test::run_command(train_cmd(2, straight, ck_straight));
  ASSERT_EQ(r.exit_code, 0) << r.output;
  r = test::run_command(train_cmd(2, split, ck_split + " --train.steps=10 --checkpoint.every=5"));
  ASSERT_EQ(r.exit_code, 0) << r.output;
  r = test::run_command(train_cmd(2, split, ck_split + " --checkpoint.resume=auto"));
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_NE(r.output.find("resumed from"), std::string::npos) << r.output;
  // Same world size: the resumed run's evaluations and final weights are identical to the straight run.
  std::vector<double> a = test::train_losses(straight / "metrics.jsonl");
  std::vector<double> b = test::train_losses(split / "metrics.jsonl");
  ASSERT_EQ(a.size(), b.size());
  EXPECT_EQ(a, b);
  EXPECT_EQ(test::slurp(straight / "metrics.jsonl"), test::slurp(split / "metrics.jsonl"));
  auto pa = read_tensors((straight / "params.h5").string()), pb = read_tensors((split / "params.h5").string());
  for (auto& [name, t] : pa)
    EXPECT_EQ(std::memcmp(t.raw(), pb.at(name).raw(), t.nbytes()), 0) << name;

  // Another world size: the 2-rank checkpoint at step 10 resumes on 4 ranks at the same global batch.
  fs::path four = data_dir() / "ck_four";
  fs::create_directories(four / "ckpt");
  fs::copy(split / "ckpt" / "step-10", four / "ckpt" / "step-10", fs::copy_options::recursive);
  r = test::run_command(
      train_cmd(4, four, " --checkpoint.dir=" + (four / "ckpt").string() + " --checkpoint.resume=auto"));
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_NE(r.output.find("re-sharding the resumed run from 2 to 4 ranks"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("step 10, epoch 0 batch 10"), std::string::npos) << r.output;
  // Rounding aside (another summation order), it continues the same run: same final losses to 1e-5.
  std::vector<double> c = test::train_losses(four / "metrics.jsonl");
  ASSERT_FALSE(c.empty());
  EXPECT_NEAR(c.back(), a.back(), 1e-5 * std::fabs(a.back()));
}

TEST(DataParallel, IndivisibleBatchIsRefusedAtStart) {
  test::CommandResult r = test::run_command(train_cmd(3, data_dir() / "np3"));
  EXPECT_EQ(r.exit_code, 2) << r.output;
  EXPECT_NE(r.output.find("batch_size = 512 is not divisible by the 3 data-parallel ranks"), std::string::npos)
      << r.output;
}

TEST(DataParallel, OneFailingRankEndsTheJobWithinSeconds) {
  auto start = std::chrono::steady_clock::now();
  test::CommandResult r = test::run_command("RECFORGE_FAULT_RANK=1@5 " + train_cmd(4, data_dir() / "fail"));
  double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  EXPECT_NE(r.exit_code, 0) << r.output;
  EXPECT_LT(seconds, 10.0) << r.output;
  EXPECT_NE(r.output.find("rank 1"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("injected failure on rank 1 at step 5"), std::string::npos) << r.output;
}

}  // namespace
}  // namespace rf
