// `recforge train` with model parallelism end to end under mpirun: a DLRM whose tables (26 x 40000 x
// 16 plus row-wise Adagrad state, 67.4 MiB) do not fit one rank's 48 MiB budget is refused on one rank
// with the planner's numbers and trains on two, writing the gathered full tables; 4 ranks as 2
// data-parallel x 2 tensor-parallel with row-wise tables follow one rank's loss trajectory.
#include <gtest/gtest.h>

#include <cmath>
#include <filesystem>

#include "src/io/tensor_file.h"
#include "tests/common/test_support.h"

namespace rf {
namespace {

namespace fs = std::filesystem;

fs::path data_dir() { return test::synth_dataset("mp_cli", test::small_synth_spec(4096, 1000, 300, 5)); }

std::string train_cmd(int ranks, const fs::path& out, const std::string& extra) {
  fs::path d = data_dir();
  return std::string(MPIEXEC) + " --allow-run-as-root --oversubscribe -np " + std::to_string(ranks) + " " +
         RECFORGE_BIN + " train --data.train=" + (d / "train.tsv").string() + " --data.test=" +
         (d / "test.tsv").string() +
         " --model.embedding_dim=16 --model.bottom_mlp=32,16 --model.top_mlp=32,16,1"
         " --train.batch_size=512 --train.threads=1 --train.eval_every=2 --optimizer.dense=adagrad"
         " --optimizer.lr=0.05 --optimizer.sparse=rowwise_adagrad --train.out_dir=" + out.string() + " " + extra;
}

TEST(ModelParallelCli, TablesBeyondOneRanksBudgetAreRefusedOnOneRankAndTrainOnTwo) {
  const std::string big = "--data.hash_buckets=40000 --parallel.embedding_sharding=auto --parallel.memory_budget_mb=48";
  test::CommandResult r = test::run_command(train_cmd(1, data_dir() / "one", big));
  EXPECT_EQ(r.exit_code, 2) << r.output;
  EXPECT_NE(r.output.find("the embedding plan does not fit: rank 0 needs 67.44 MiB (parameters 63.48 MiB + optimizer "
                          "state 3.97 MiB) but the budget is 48.00 MiB per rank"),
            std::string::npos)
      << r.output;

  fs::path dir = data_dir() / "two";
  r = test::run_command(train_cmd(2, dir, big));
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_NE(r.output.find("embedding sharding plan over 2 rank(s)"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("plan rank 1: 33.72"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("test auc="), std::string::npos) << r.output;
  auto params = read_tensors((dir / "params.h5").string());
  for (int t = 0; t < 26; ++t) {
    const Tensor& table = params.at("embeddings." + std::to_string(t) + ".weight");
    EXPECT_EQ(table.shape(), (Shape{40000, 16})) << t;
  }
}

TEST(ModelParallelCli, DataTimesTensorParallelGridFollowsOneRank) {
  fs::path one = data_dir() / "ref";
  const std::string small = "--data.hash_buckets=400";
  test::CommandResult r = test::run_command(train_cmd(1, one, small));
  ASSERT_EQ(r.exit_code, 0) << r.output;
  std::vector<double> ref = test::train_losses(one / "metrics.jsonl");
  ASSERT_EQ(ref.size(), 5u);  // 8 steps, evaluated every 2 (the last one is the final evaluation)
  fs::path grid = data_dir() / "dp2tp2";
  r = test::run_command(train_cmd(4, grid, small + " --parallel.tensor_parallel=2 --parallel.embedding_sharding=row"));
  ASSERT_EQ(r.exit_code, 0) << r.output;
  std::vector<double> losses = test::train_losses(grid / "metrics.jsonl");
  ASSERT_EQ(losses.size(), ref.size());
  // fp32: row-wise partial pooled sums, per-rank dense gradient sums and row-parallel partial products
  // add in other orders than one rank (~1e-7 relative per step); 1e-5 relative covers 8 steps of it.
  for (size_t i = 0; i < ref.size(); ++i) EXPECT_NEAR(losses[i], ref[i], 1e-5 * std::fabs(ref[i])) << i;
}

}  // namespace
}  // namespace rf
