// `recforge train` with model parallelism end to end under mpirun: a DLRM whose tables (26 x 40000 x
// 16 plus row-wise Adagrad state, 67.4 MiB) do not fit one rank's 48 MiB budget is refused on one rank
// with the planner's numbers and trains on two, writing the gathered full tables; 4 ranks as 2
// data-parallel x 2 tensor-parallel with row-wise tables follow one rank's loss trajectory. Checkpoints
// of row-, table- and column-sharded (and tensor-parallel) runs hold full tensors: resuming is bit-exact,
// and resuming on 4 ranks or on one (replicated) re-shards them.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
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
  // The serving export holds the gathered tables and scores the test rows as the sharded run did.
  std::string auc_line = r.output.substr(r.output.rfind("test auc=") + 9, 7);
  fs::path d = data_dir();
  test::CommandResult p = test::run_command(std::string(RECFORGE_BIN) + " predict --predict.model=" +
                                            (dir / "model.h5").string() + " --predict.input=" +
                                            (d / "test.tsv").string() + " --predict.out=" + (dir / "scores.txt").string());
  ASSERT_EQ(p.exit_code, 0) << p.output;
  EXPECT_NE(p.output.find("auc=" + auc_line), std::string::npos) << p.output << " vs test auc=" << auc_line;
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

TEST(ModelParallelCli, ShardedCheckpointsResumeBitExactAndOnAnotherSharding) {
  const std::string small = "--data.hash_buckets=400 ";
  // Row-sharded, table-sharded, column-sharded (row-wise Adagrad accumulators over the full rows, the
  // same on every column shard), and row-sharded on a 2 x 2 data x tensor-parallel grid.
  for (const std::string sharding : {"row", "table", "column", "row_tp2"}) {
    const int np = sharding == "row_tp2" ? 4 : 2;
    const std::string mp = small + "--parallel.embedding_sharding=" + sharding.substr(0, sharding.find('_')) +
                           (np == 4 ? " --parallel.tensor_parallel=2" : "");
    fs::path straight = data_dir() / ("ck_straight_" + sharding), split = data_dir() / ("ck_split_" + sharding);
    const std::string ck_straight = mp + " --checkpoint.dir=" + (straight / "ckpt").string();
    const std::string ck_split = mp + " --checkpoint.dir=" + (split / "ckpt").string();
    test::CommandResult r = test::run_command(train_cmd(np, straight, ck_straight));
    ASSERT_EQ(r.exit_code, 0) << r.output;
    r = test::run_command(train_cmd(np, split, ck_split + " --train.steps=4 --checkpoint.every=2"));
    ASSERT_EQ(r.exit_code, 0) << r.output;
    // The checkpoint holds the full tables and the full row-wise Adagrad accumulators.
    auto model = read_tensors((split / "ckpt" / "step-4" / "model.h5").string());
    auto state = read_tensors((split / "ckpt" / "step-4" / "optimizer.h5").string());
    EXPECT_EQ(model.at("embeddings.0.weight").shape(), (Shape{400, 16})) << sharding;
    EXPECT_EQ(state.at("sparse.momentum1/embeddings.0.weight").shape(), (Shape{400})) << sharding;
    r = test::run_command(train_cmd(np, split, ck_split + " --checkpoint.resume=auto"));
    ASSERT_EQ(r.exit_code, 0) << r.output;
    EXPECT_NE(r.output.find("resumed from"), std::string::npos) << r.output;
    // Same world size and sharding: identical evaluations and final weights (the tensor-parallel top
    // MLP's Adagrad state included).
    EXPECT_EQ(test::slurp(straight / "metrics.jsonl"), test::slurp(split / "metrics.jsonl")) << sharding;
    auto pa = read_tensors((straight / "params.h5").string()), pb = read_tensors((split / "params.h5").string());
    ASSERT_EQ(pa.size(), pb.size());
    for (auto& [name, t] : pa)
      EXPECT_EQ(std::memcmp(t.raw(), pb.at(name).raw(), t.nbytes()), 0) << sharding << " " << name;
    if (sharding != "row") continue;

    // Another world size or sharding: the 2-rank row-sharded checkpoint at step 4 resumes on 4 ranks
    // (row-sharded) and on one rank (replicated tables) and continues the same run.
    const std::vector<double> a = test::train_losses(straight / "metrics.jsonl");
    ASSERT_FALSE(a.empty());
    for (const auto& [ranks, flags] : std::vector<std::pair<int, std::string>>{{4, mp}, {1, small}}) {
      fs::path other = data_dir() / ("ck_resume_np" + std::to_string(ranks));
      fs::remove_all(other);
      fs::create_directories(other / "ckpt");
      fs::copy(split / "ckpt" / "step-4", other / "ckpt" / "step-4", fs::copy_options::recursive);
      r = test::run_command(train_cmd(ranks, other, flags + " --checkpoint.dir=" + (other / "ckpt").string() +
                                                        " --checkpoint.resume=auto"));
      ASSERT_EQ(r.exit_code, 0) << r.output;
      EXPECT_NE(r.output.find("re-sharding the resumed run from 2 to " + std::to_string(ranks) + " ranks"),
                std::string::npos)
          << r.output;
      const std::vector<double> c = test::train_losses(other / "metrics.jsonl");
      ASSERT_FALSE(c.empty());
      // fp32: pooled sums and gradient reductions add in another order on another world (~1e-7 relative
      // per step); 1e-5 relative covers the 4 resumed steps.
      EXPECT_NEAR(c.back(), a.back(), 1e-5 * std::fabs(a.back())) << ranks << " ranks";
    }

    // model.init with sharded tables: each rank loads its rows of the full file.
    fs::path init = data_dir() / "mp_init";
    r = test::run_command(train_cmd(2, init, mp + " --train.steps=2 --model.init=" + (straight / "params.h5").string()));
    ASSERT_EQ(r.exit_code, 0) << r.output;
    const std::vector<double> b = test::train_losses(init / "metrics.jsonl");
    ASSERT_FALSE(b.empty());
    EXPECT_LT(b.back(), a.front()) << "a trained model starts from a lower loss than a fresh one";
  }
}

}  // namespace
}  // namespace rf
