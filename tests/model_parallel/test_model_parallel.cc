// Model parallelism under mpirun (2 and 4 ranks): for table-, row- and column-wise embedding sharding
// and a tensor-parallel top MLP, the forward logits, every gradient and the 20-step loss trajectory
// equal those of the single-process model on the same global batches; a DLRM whose tables do not fit
// one rank's budget trains when sharded and the planner's bytes per rank match what the rank
// allocated; the planner's refusal names its numbers. Every rank builds the single-process reference
// itself (the models are small), so no files are exchanged.
#include <gtest/gtest.h>

#include <cmath>
#include <fstream>
#include <random>
#include <string>

#include "kernels/loss.h"
#include "kernels/threads.h"
#include "parallel/mpi_communicator.h"
#include "parallel/process_group.h"
#include "parallel/sharding_plan.h"
#include "src/config/config.h"
#include "src/core/error.h"
#include "src/model/model_parallel.h"
#include "src/model/sharded_embedding.h"
#include "src/optim/optimizer.h"
#include "src/train/data_source.h"
#include "src/train/trainer.h"

namespace rf {
namespace {

// fp32 tolerance. Table- and column-wise pooling add a bag's rows in the same order as one process,
// and the sparse gradients are reduced over the same bag order (sources in rank order = the global
// batch order), but the row-wise pooled sums add per-owner partial sums, the data-parallel dense
// gradients add per-rank partial sums, and a row-parallel Linear adds per-rank partial products: each
// a different fp32 summation order, ~1e-7 relative per operation. 2e-5 relative (plus 1e-7 absolute
// for values that cancel to ~0) covers that through a forward/backward, and 20 optimizer steps of it.
constexpr double kRel = 2e-5, kAbs = 1e-7;

ModelConfig small_model(const std::string& type) {
  ModelConfig mc;
  mc.type = type;
  mc.num_dense = 5;
  mc.table_sizes = {37, 120, 9, 64, 250};
  mc.embedding_dim = 8;
  mc.bottom_mlp = {16, 8};
  mc.top_mlp = type == "dlrm" ? std::vector<int64_t>{32, 16, 1} : std::vector<int64_t>{24, 1};
  mc.cross_layers = 2;
  mc.seed = 99;
  return mc;
}

// Multi-hot bags of 1..3 indices with repeats (so row-wise owners see partial bags and the sparse
// backward merges duplicate rows).
data::Batch make_batch(const ModelConfig& mc, int64_t batch, uint64_t seed) {
  std::mt19937_64 rng(seed);
  data::Batch b;
  b.labels = Tensor::empty({batch}, DType::kF32);
  b.dense = Tensor::empty({batch, mc.num_dense}, DType::kF32);
  for (int64_t i = 0; i < batch; ++i) b.labels.data<float>()[i] = static_cast<float>(rng() & 1u);
  std::uniform_real_distribution<float> u(0.0f, 3.0f);
  for (int64_t i = 0; i < batch * mc.num_dense; ++i) b.dense.data<float>()[i] = u(rng);
  for (int64_t rows : mc.table_sizes) {
    std::vector<int64_t> idx, off{0};
    for (int64_t i = 0; i < batch; ++i) {
      int64_t n = 1 + static_cast<int64_t>(rng() % 3);
      for (int64_t k = 0; k < n; ++k) idx.push_back(static_cast<int64_t>(rng() % static_cast<uint64_t>(rows)));
      off.push_back(static_cast<int64_t>(idx.size()));
    }
    b.indices.push_back(Tensor::from_vector<int64_t>(idx, {static_cast<int64_t>(idx.size())}));
    b.offsets.push_back(Tensor::from_vector<int64_t>(off, {batch + 1}));
  }
  return b;
}

Config config_for(const std::string& sharding, int tp, const std::string& sparse_opt = "sgd") {
  return Config::defaults().with_overrides(
      {"--parallel.embedding_sharding=" + sharding, "--parallel.tensor_parallel=" + std::to_string(tp),
       "--optimizer.dense=adagrad", "--optimizer.lr=0.05", "--optimizer.sparse=" + sparse_opt,
       "--optimizer.sparse_lr=0.1", "--train.batch_size=64", "--train.threads=1", "--parallel.overlap=false"});
}

Parameter* find(const ParameterList& l, const std::string& name) {
  for (Parameter* p : l)
    if (p->name == name) return p;
  return nullptr;
}

// Dense copy [rows, cols] of a sparse gradient over a table of `rows` rows.
std::vector<float> densify(const SparseGrad& g, int64_t rows, int64_t cols) {
  std::vector<float> out(static_cast<size_t>(rows * cols), 0.0f);
  if (!g.rows.defined()) return out;
  for (int64_t k = 0; k < g.rows.numel(); ++k)
    for (int64_t c = 0; c < cols; ++c)
      out[static_cast<size_t>(g.rows.data<int64_t>()[k] * cols + c)] = g.values.data<float>()[k * cols + c];
  return out;
}

// Compares a rank's (possibly sharded) tensor with the matching block of the reference's full one.
void expect_block(const float* got, int64_t rows, int64_t cols, const float* ref, int64_t ref_cols, int64_t r0,
                  int64_t c0, const std::string& what) {
  int bad = 0;
  for (int64_t i = 0; i < rows; ++i)
    for (int64_t j = 0; j < cols; ++j) {
      double a = got[i * cols + j], b = ref[(r0 + i) * ref_cols + c0 + j];
      if (std::fabs(a - b) > kAbs + kRel * std::fabs(b) && bad++ < 3)
        ADD_FAILURE() << what << " [" << r0 + i << ", " << c0 + j << "]: " << a << " vs single-process " << b;
    }
}

struct Case {
  std::string type, sharding;
  int tp;
  PoolMode pooling = PoolMode::kSum;
};

std::string name_of(const Case& c) {
  return c.type + "/" + c.sharding + "/tp" + std::to_string(c.tp) + (c.pooling == PoolMode::kMean ? "/mean" : "");
}

std::vector<Case> cases() {
  std::vector<Case> out;
  int world = ProcessGroup::get().world_size();
  for (std::string type : {"dlrm", "dcnv2"})
    for (std::string s : {"table", "row", "column", "auto"})
      for (int tp : {1, 2})
        if (world % tp == 0) out.push_back({type, s, tp});
  // Sharded tables with a mix of modes in one model, and tensor parallelism alone.
  out.push_back({"dlrm", "replicated", 2});
  // Mean pooling: the requester divides the owners' sums by the bag length (bags of 1-3 lookups).
  for (std::string s : {"table", "row", "column"}) out.push_back({"dlrm", s, 1, PoolMode::kMean});
  return out;
}

TEST(ModelParallel, ForwardAndGradientsMatchOneProcess) {
  ProcessGroup& pg = ProcessGroup::get();
  set_num_threads(1);  // ranks share the cores under mpirun; spinning OpenMP pools would fight
  for (const Case& c : cases()) {
    if (pg.world_size() % c.tp != 0) continue;
    SCOPED_TRACE(name_of(c));
    Config cfg = config_for(c.sharding, c.tp);
    ModelConfig mc = small_model(c.type);
    mc.pooling = c.pooling;
    ParallelGrid grid = pg.make_grid(c.tp);
    ModelConfig pmc = mc;
    pmc.parallel = make_model_parallel(cfg, grid, mc);
    auto ref = make_model(mc);
    auto par = make_model(pmc);

    const int64_t global = 48;
    data::Batch all = make_batch(mc, global, 7);
    int64_t b0 = global * grid.dp_rank / grid.dp_size, b1 = global * (grid.dp_rank + 1) / grid.dp_size;
    data::Batch mine = data::slice_batch(all, b0, b1);

    Tensor ref_logits = Tensor::empty({global}, DType::kF32), logits = Tensor::empty({b1 - b0}, DType::kF32);
    ref->forward(model_input(all), ref_logits);
    par->forward(model_input(mine), logits);
    expect_block(logits.data<float>(), b1 - b0, 1, ref_logits.data<float>(), 1, b0, 0, "logits");

    // The trainer's loss gradient: mean over the global batch; each rank scales its share by dp_size
    // because the data-parallel reduction averages.
    Tensor ref_d = Tensor::empty({global}, DType::kF32), d = Tensor::empty({b1 - b0}, DType::kF32);
    bce_with_logits_backward(ref_logits, all.labels, 1.0f, ref_d);
    bce_with_logits_backward(logits, mine.labels,
                             static_cast<float>(grid.dp_size * (b1 - b0)) / static_cast<float>(global), d);
    ref->backward(model_input(all), ref_d);
    par->backward(model_input(mine), d);

    MpiCommunicator dp(grid.data_parallel);
    ParameterList ref_params = ref->parameters(), params = par->parameters();
    for (Parameter* p : params) {
      Parameter* r = find(ref_params, p->name);
      ASSERT_NE(r, nullptr) << p->name;
      const int64_t cols = r->value.dim() == 2 ? r->value.size(1) : 1;
      if (p->sparse) {
        if (p->sharding == Sharding::kReplicated) continue;  // data-parallel path, tested in tests/parallel
        std::vector<float> ref_g = densify(r->sparse_grad, r->value.size(0), cols);
        std::vector<float> g = densify(p->sparse_grad, p->value.size(0), p->value.size(1));
        expect_block(g.data(), p->value.size(0), p->value.size(1), ref_g.data(), cols, p->row_begin, p->col_begin,
                     p->name + " grad");
        expect_block(p->value.data<float>(), p->value.size(0), p->value.size(1), r->value.data<float>(), cols,
                     p->row_begin, p->col_begin, p->name + " init");
      } else {
        Tensor g = p->grad.clone();
        if (grid.dp_size > 1) dp.all_reduce(g, ReduceOp::kAvg);
        const int64_t pcols = p->value.dim() == 2 ? p->value.size(1) : 1;
        expect_block(g.data<float>(), p->value.size(0), pcols, r->grad.data<float>(), cols, p->row_begin,
                     p->col_begin, p->name + " grad");
        expect_block(p->value.data<float>(), p->value.size(0), pcols, r->value.data<float>(), cols, p->row_begin,
                     p->col_begin, p->name + " init");
      }
    }
    // Every parameter, gathered in full, is the reference's (initialisation draws are shared).
    if (pmc.parallel) {
      auto full = pmc.parallel->gather_full_parameters(params);
      EXPECT_EQ(full.size(), ref_params.size());
      for (Parameter* r : ref_params) {
        ASSERT_TRUE(full.count(r->name)) << r->name;
        ASSERT_EQ(full[r->name].numel(), r->value.numel()) << r->name;
        const int64_t cols = r->value.dim() == 2 ? r->value.size(1) : 1;
        expect_block(full[r->name].data<float>(), r->value.size(0), cols, r->value.data<float>(), cols, 0, 0,
                     r->name + " gathered");
      }
    }
  }
}

// The single-process training loop the Trainer's step must reproduce: forward, mean BCE, backward,
// the same optimizers.
std::vector<double> reference_losses(const Config& cfg, const ModelConfig& mc, const std::vector<data::Batch>& batches,
                                     int steps, std::map<std::string, Tensor>* final_params) {
  auto model = make_model(mc);
  ParameterList params = model->parameters();
  OptimizerHyperparams hp;
  hp.dense_lr = cfg.get_float("optimizer.lr");
  hp.sparse_lr = cfg.get_float("optimizer.sparse_lr");
  hp.eps = cfg.get_float("optimizer.adagrad_eps");
  hp.sparse_eps = cfg.get_float("optimizer.adagrad_eps");
  hp.initial_accumulator = cfg.get_float("optimizer.adagrad_init");
  auto opt = make_optimizers(cfg.get_string("optimizer.dense"), cfg.get_string("optimizer.sparse"), hp);
  opt->init_state(params);
  std::vector<double> losses;
  for (int s = 0; s < steps; ++s) {
    const data::Batch& b = batches[static_cast<size_t>(s) % batches.size()];
    Tensor logits = Tensor::empty({b.size()}, DType::kF32), d = Tensor::empty({b.size()}, DType::kF32);
    model->forward(model_input(b), logits);
    losses.push_back(bce_with_logits_forward(logits, b.labels));
    bce_with_logits_backward(logits, b.labels, 1.0f, d);
    model->backward(model_input(b), d);
    opt->step(params, s, 1.0);
  }
  for (Parameter* p : params) (*final_params)[p->name] = p->value;
  return losses;
}

TEST(ModelParallel, TwentyStepLossTrajectoryMatchesOneProcess) {
  ProcessGroup& pg = ProcessGroup::get();
  const int kSteps = 20;
  struct Run {
    std::string sharding;
    int tp;
    std::string sparse_opt;
  };
  // Row-wise Adagrad keeps one accumulator per row of a shard. Column-wise shards take the row's
  // statistics over the full width from the other shards of the table (exchange_full_row_sums), so
  // every sharding follows one process with either sparse optimizer.
  std::vector<Run> runs = {{"table", 1, "rowwise_adagrad"}, {"row", 1, "rowwise_adagrad"},
                           {"column", 1, "rowwise_adagrad"}, {"column", 1, "sgd"},
                           {"row", 2, "rowwise_adagrad"}, {"replicated", 2, "rowwise_adagrad"}};
  for (std::string type : {"dlrm", "dcnv2"})
    for (const Run& run : runs) {
      if (pg.world_size() % run.tp != 0) continue;
      SCOPED_TRACE(type + "/" + run.sharding + "/tp" + std::to_string(run.tp) + "/" + run.sparse_opt);
      Config cfg = config_for(run.sharding, run.tp, run.sparse_opt);
      ModelConfig mc = small_model(type);
      std::vector<data::Batch> batches;
      for (uint64_t s = 0; s < 4; ++s) batches.push_back(make_batch(mc, 64, 100 + s));
      std::map<std::string, Tensor> ref_params;
      std::vector<double> ref = reference_losses(cfg, mc, batches, kSteps, &ref_params);
      Trainer trainer(cfg, mc);
      for (int s = 0; s < kSteps; ++s) {
        double loss = trainer.train_step(batches[static_cast<size_t>(s) % batches.size()]);
        EXPECT_NEAR(loss, ref[static_cast<size_t>(s)], kRel * std::fabs(ref[static_cast<size_t>(s)])) << "step " << s;
      }
      ParameterList params = trainer.model().parameters();
      std::map<std::string, Tensor> full;
      if (trainer.model_parallel()) full = trainer.model_parallel()->gather_full_parameters(params);
      else
        for (Parameter* p : params) full[p->name] = p->value;
      for (auto& [name, r] : ref_params) {
        ASSERT_TRUE(full.count(name)) << name;
        double diff = 0, norm = 0;
        const float* a = r.data<float>();
        const float* b = full[name].data<float>();
        for (int64_t i = 0; i < r.numel(); ++i) {
          diff += (double(a[i]) - b[i]) * (double(a[i]) - b[i]);
          norm += double(a[i]) * a[i];
        }
        // Same reason as kRel: rounding-order differences carried through 20 steps.
        EXPECT_LE(std::sqrt(diff), kRel * std::sqrt(norm) + 1e-6) << name;
      }
    }
}

int64_t rss_bytes() {
  std::ifstream in("/proc/self/statm");
  int64_t size = 0, resident = 0;
  in >> size >> resident;
  return resident * 4096;
}

TEST(ModelParallel, TablesBeyondOneRanksBudgetTrainShardedAndThePlanMatchesAllocation) {
  ProcessGroup& pg = ProcessGroup::get();
  // 4 tables of 200k x 16 fp32 (12.2 MiB) + a row-wise Adagrad accumulator (0.76 MiB): 52 MiB in all,
  // against a budget of 40 MiB per rank.
  Config cfg = Config::defaults().with_overrides(
      {"--parallel.embedding_sharding=auto", "--parallel.memory_budget_mb=40", "--optimizer.sparse=rowwise_adagrad",
       "--train.batch_size=64", "--train.threads=1"});
  ModelConfig mc = small_model("dlrm");
  mc.table_sizes = {200000, 200000, 200000, 200000};
  mc.embedding_dim = 16;
  mc.bottom_mlp = {16, 16};

  // One rank: refused, with the numbers.
  try {
    plan_for(cfg, 1, mc);
    ADD_FAILURE() << "a 52 MiB plan fit a 40 MiB budget on one rank";
  } catch (const ConfigError& e) {
    std::string msg = e.what();
    EXPECT_NE(msg.find("rank 0 needs 51.88 MiB (parameters 48.83 MiB + optimizer state 3.05 MiB)"), std::string::npos) << msg;
    EXPECT_NE(msg.find("the budget is 40.00 MiB per rank"), std::string::npos) << msg;
    EXPECT_NE(msg.find("4 tables take 51.88 MiB in all over 1 rank(s)"), std::string::npos) << msg;
  }

  ShardingPlan plan = plan_for(cfg, pg.world_size(), mc);
  const int me = pg.rank();
  int64_t before = rss_bytes();
  Trainer trainer(cfg, mc);
  int64_t after = rss_bytes();
  ParameterList params = trainer.model().parameters();
  int64_t dense = 0;
  for (Parameter* p : params)
    if (!p->sparse) dense += static_cast<int64_t>(p->value.nbytes());
  int64_t allocated = embedding_bytes_allocated(params, trainer.optimizer().state());
  // The plan counts exactly the fp32 values and accumulators a rank holds: equal, well within 10%.
  EXPECT_NEAR(static_cast<double>(allocated), static_cast<double>(plan.bytes(me)), 0.1 * plan.bytes(me));
  EXPECT_EQ(allocated, plan.bytes(me));
  // The process's resident memory grew by about that much (dense weights, their gradients and
  // optimizer state are a few KiB; the rest is allocator and MPI noise): within 10%.
  EXPECT_NEAR(static_cast<double>(after - before), static_cast<double>(plan.bytes(me)), 0.1 * plan.bytes(me))
      << "RSS grew " << after - before << " bytes, plan " << plan.bytes(me) << ", dense " << dense;
  EXPECT_LE(plan.bytes(me), 40ll << 20);

  data::Batch b = make_batch(mc, 64, 3);
  double first = trainer.train_step(b);
  for (int s = 0; s < 5; ++s) trainer.train_step(b);
  double last = trainer.train_step(b);
  EXPECT_TRUE(std::isfinite(last));
  EXPECT_LT(last, first) << "the same batch six times should lower its loss";
}

// What the GPU path of the sharded tables does not run yet is refused by ModelConfig::validate (no GPU
// needed to check): tensor parallelism, mean pooling over sharded tables, column-wise tables under a
// row-wise optimizer. Table- and row-wise tables with sum pooling pass.
TEST(ModelParallel, GpuConfigurationsTheShardedPathRefuses) {
  ProcessGroup& pg = ProcessGroup::get();
  auto validate_on_gpu = [&](const std::string& sharding, int tp, const std::string& sparse, PoolMode pooling) {
    Config cfg = config_for(sharding, tp, sparse);
    ModelConfig mc = small_model("dlrm");
    mc.pooling = pooling;
    mc.parallel = make_model_parallel(cfg, pg.make_grid(tp), mc);  // host communicators: built on the CPU
    mc.device = Device::cuda(0);
    mc.validate();
  };
  EXPECT_NO_THROW(validate_on_gpu("table", 1, "rowwise_adagrad", PoolMode::kSum));
  EXPECT_NO_THROW(validate_on_gpu("row", 1, "rowwise_adagrad", PoolMode::kSum));
  EXPECT_NO_THROW(validate_on_gpu("column", 1, "sgd", PoolMode::kSum));
  auto refusal = [&](const std::string& sharding, int tp, const std::string& sparse, PoolMode pooling) -> std::string {
    try {
      validate_on_gpu(sharding, tp, sparse, pooling);
    } catch (const ConfigError& e) {
      return e.what();
    }
    return "accepted";
  };
  EXPECT_NE(refusal("row", 1, "sgd", PoolMode::kMean).find("pooling = mean"), std::string::npos);
  EXPECT_NE(refusal("column", 1, "rowwise_adagrad", PoolMode::kSum).find("column-sharded with a row-wise sparse optimizer"),
            std::string::npos);
  if (pg.world_size() % 2 == 0)
    EXPECT_NE(refusal("row", 2, "sgd", PoolMode::kSum).find("tensor parallelism"), std::string::npos);
}

TEST(ShardingPlanner, GreedyPlacementAndOverrides) {
  std::vector<TableSpec> t = {{1000, 8, 1}, {10, 8, 1}, {500, 8, 1}, {400, 8, 1}, {100000, 8, 1}};
  PlannerOptions o;
  o.world = 2;
  o.budget_bytes = 2 << 20;  // 2 MiB; table 4 alone is 3.4 MiB with its accumulator
  ShardingPlan p = plan_sharding(t, o);
  EXPECT_EQ(p.placement[4].kind, ShardingKind::kRow);
  EXPECT_EQ(p.placement[0].kind, ShardingKind::kTable);
  // The biggest table-wise table goes to the less-loaded rank, then the next fills the other.
  EXPECT_NE(p.placement[0].pieces[0].rank, p.placement[2].pieces[0].rank);
  int64_t sum = 0;
  for (int r = 0; r < 2; ++r) sum += p.param_bytes[static_cast<size_t>(r)];
  EXPECT_EQ(sum, (1000 + 10 + 500 + 400 + 100000) * 8 * 4);
  o.overrides = parse_table_overrides("1:column,2:replicated", 5, "k");
  p = plan_sharding(t, o);
  EXPECT_EQ(p.placement[1].kind, ShardingKind::kColumn);
  EXPECT_EQ(p.placement[1].pieces.size(), 2u);
  EXPECT_EQ(p.placement[1].pieces[1].col_begin, 4);
  EXPECT_EQ(p.placement[2].kind, ShardingKind::kReplicated);
  EXPECT_THROW(parse_table_overrides("9:row", 5, "k"), ConfigError);
  EXPECT_THROW(parse_table_overrides("1:diagonal", 5, "k"), ConfigError);
  EXPECT_NE(p.describe().find("plan rank 1:"), std::string::npos);
}

}  // namespace
}  // namespace rf
