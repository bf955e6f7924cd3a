// `recforge train` with model parallelism end to end under mpirun: a DLRM whose tables (26 x 40000 x
// 16 plus row-wise Adagrad state, 67.4 MiB) do not fit one rank's 48 MiB budget is refused on one rank
// with the planner's numbers and trains on two, writing the gathered full tables; 4 ranks as 2
// data-parallel x 2 tensor-parallel with row-wise tables follow one rank's loss trajectory.
#include <gtest/gtest.h>

#include <sys/wait.h>

#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>

#include "dataloader/synth.h"
#include "src/io/tensor_file.h"

namespace rf {
namespace {

namespace fs = std::filesystem;

fs::path data_dir() {
  static fs::path dir = [] {
    fs::path d = fs::temp_directory_path() / ("rf_mp_cli_" + std::to_string(getpid()));
    fs::create_directories(d);
    data::SynthSpec spec;
    spec.rows_train = 4096;
    spec.rows_test = 1000;
    spec.min_cardinality = 20;
    spec.max_cardinality = 300;
    spec.seed = 5;
    data::synth_write(spec, (d / "train.tsv").string(), (d / "test.tsv").string());
    return d;
  }();
  return dir;
}

int run(const std::string& cmd, std::string* output) {
  FILE* p = popen((cmd + " 2>&1").c_str(), "r");
  char buf[4096];
  output->clear();
  while (fgets(buf, sizeof buf, p)) *output += buf;
  int status = pclose(p);
  return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

std::string train_cmd(int ranks, const fs::path& out, const std::string& extra) {
  fs::path d = data_dir();
  return std::string(MPIEXEC) + " --allow-run-as-root --oversubscribe -np " + std::to_string(ranks) + " " +
         RECFORGE_BIN + " train --data.train=" + (d / "train.tsv").string() + " --data.test=" +
         (d / "test.tsv").string() +
         " --model.embedding_dim=16 --model.bottom_mlp=32,16 --model.top_mlp=32,16,1"
         " --train.batch_size=512 --train.threads=1 --train.eval_every=2 --optimizer.dense=adagrad"
         " --optimizer.lr=0.05 --optimizer.sparse=rowwise_adagrad --train.out_dir=" + out.string() + " " + extra;
}

std::vector<double> train_losses(const fs::path& metrics) {
  std::ifstream in(metrics);
  std::vector<double> out;
  std::string line;
  while (std::getline(in, line)) {
    size_t k = line.find("\"train_loss\": ");
    if (k != std::string::npos) out.push_back(std::stod(line.substr(k + 14)));
  }
  return out;
}

TEST(ModelParallelCli, TablesBeyondOneRanksBudgetAreRefusedOnOneRankAndTrainOnTwo) {
  const std::string big = "--data.hash_buckets=40000 --parallel.embedding_sharding=auto --parallel.memory_budget_mb=48";
  std::string out;
  EXPECT_EQ(run(train_cmd(1, data_dir() / "one", big), &out), 2) << out;
  EXPECT_NE(out.find("the embedding plan does not fit: rank 0 needs 67.44 MiB (parameters 63.48 MiB + optimizer "
                     "state 3.97 MiB) but the budget is 48.00 MiB per rank"), std::string::npos) << out;

  fs::path dir = data_dir() / "two";
  ASSERT_EQ(run(train_cmd(2, dir, big), &out), 0) << out;
  EXPECT_NE(out.find("embedding sharding plan over 2 rank(s)"), std::string::npos) << out;
  EXPECT_NE(out.find("plan rank 1: 33.72"), std::string::npos) << out;
  EXPECT_NE(out.find("test auc="), std::string::npos) << out;
  auto params = read_tensors((dir / "params.h5").string());
  for (int t = 0; t < 26; ++t) {
    const Tensor& table = params.at("embeddings." + std::to_string(t) + ".weight");
    EXPECT_EQ(table.shape(), (Shape{40000, 16})) << t;
  }
}

TEST(ModelParallelCli, DataTimesTensorParallelGridFollowsOneRank) {
  std::string out;
  fs::path one = data_dir() / "ref";
  const std::string small = "--data.hash_buckets=400";
  ASSERT_EQ(run(train_cmd(1, one, small), &out), 0) << out;
  std::vector<double> ref = train_losses(one / "metrics.jsonl");
  ASSERT_EQ(ref.size(), 5u);  // 8 steps, evaluated every 2 (the last one is the final evaluation)
  fs::path grid = data_dir() / "dp2tp2";
  ASSERT_EQ(run(train_cmd(4, grid, small + " --parallel.tensor_parallel=2 --parallel.embedding_sharding=row"), &out), 0)
      << out;
  std::vector<double> losses = train_losses(grid / "metrics.jsonl");
  ASSERT_EQ(losses.size(), ref.size());
  // fp32: row-wise partial pooled sums, per-rank dense gradient sums and row-parallel partial products
  // add in other orders than one rank (~1e-7 relative per step); 1e-5 relative covers 8 steps of it.
  for (size_t i = 0; i < ref.size(); ++i) EXPECT_NEAR(losses[i], ref[i], 1e-5 * std::fabs(ref[i])) << i;
}

}  // namespace
}  // namespace rf
