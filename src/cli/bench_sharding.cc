// `recforge bench sharding`: for each embedding sharding mode (replicated, table, row, column) the
// training step of the [model] on generated batches (bench.tables x bench.rows_per_table), the time
// per step spent in the embedding all-to-alls (indices, pooled blocks, gradients) with the bytes this
// rank sent, and the memory per rank: what the planner predicts and what the rank allocated for its
// tables and their optimizer state. Run it under mpirun; with one rank the all-to-alls are copies.
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <random>

#include "kernels/threads.h"
#include "parallel/mpi_communicator.h"
#include "parallel/process_group.h"
#include "dataloader/synth.h"
#include "src/cli/commands.h"
#include "src/config/config.h"
#include "src/core/error.h"
#include "src/model/model_parallel.h"
#include "src/optim/optimizer.h"
#include "src/train/trainer.h"

namespace rf::cli {

namespace {


struct ModeResult {
  double step_ms = 0, a2a_ms = 0, a2a_kib = 0;
  int64_t planned = 0, allocated = 0, max_planned = 0;
};

}  // namespace

int run_bench_sharding(const Config& cfg) {
  ProcessGroup& pg = ProcessGroup::init();
  const int64_t kNumDense = 13;
  std::vector<int64_t> sizes(static_cast<size_t>(cfg.get_int("bench.tables")), cfg.get_int("bench.rows_per_table"));
  const int64_t steps = cfg.get_int("bench.steps"), warmup = cfg.get_int("bench.warmup");
  const int64_t batch = cfg.get_int("train.batch_size");
  std::vector<std::string> modes = {"replicated", "table", "row", "column"};
  std::vector<ModeResult> results;
  MpiCommunicator world(pg.world());
  for (const std::string& mode : modes) {
    Config c = cfg.with_overrides({"--parallel.embedding_sharding=" + mode, "--parallel.overlap=true"});
    ModelConfig mc = model_config_from(c, kNumDense, sizes);
    ModeResult r;
    {
      Trainer trainer(c, mc);
      std::vector<data::Batch> batches;
      for (uint64_t s = 0; s < 4; ++s) batches.push_back(data::random_batch(batch, kNumDense, mc.table_sizes, 31 + s));
      for (int64_t i = 0; i < warmup; ++i) trainer.train_step(batches[static_cast<size_t>(i) % batches.size()]);
      AllToAllStats before = trainer.model_parallel() ? trainer.model_parallel()->a2a : AllToAllStats{};
      std::vector<double> ms;
      for (int64_t i = 0; i < steps; ++i) {
        world.barrier();  // steps start together, so the all-to-all time is not another rank's lateness
        auto t0 = std::chrono::steady_clock::now();
        trainer.train_step(batches[static_cast<size_t>(i) % batches.size()]);
        ms.push_back(std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count());
      }
      std::sort(ms.begin(), ms.end());
      r.step_ms = ms[ms.size() / 2];
      if (trainer.model_parallel()) {
        const AllToAllStats& a = trainer.model_parallel()->a2a;
        r.a2a_ms = 1e3 * (a.seconds - before.seconds) / static_cast<double>(steps);
        r.a2a_kib = static_cast<double>(a.bytes - before.bytes) / 1024.0 / static_cast<double>(steps);
      }
      ParameterList params = trainer.model().parameters();
      r.allocated = embedding_bytes_allocated(params, trainer.optimizer().state());
    }
    ParallelGrid grid = pg.make_grid(static_cast<int>(c.get_int("parallel.tensor_parallel")));
    ShardingPlan plan = plan_for(c, grid.dp_size, mc);
    r.planned = plan.bytes(grid.dp_rank);
    for (int k = 0; k < plan.world; ++k) r.max_planned = std::max(r.max_planned, plan.bytes(k));
    // Rank 0 reports the slowest rank's all-to-all time and the largest allocation.
    Tensor ms_max = Tensor::from_vector<float>({static_cast<float>(r.a2a_ms)}, {1});
    Tensor bytes_max = Tensor::from_vector<int64_t>({r.allocated}, {1});
    world.all_reduce(ms_max, ReduceOp::kMax);
    world.all_reduce(bytes_max, ReduceOp::kMax);
    r.a2a_ms = ms_max.data<float>()[0];
    r.allocated = bytes_max.data<int64_t>()[0];
    results.push_back(r);
  }
  if (pg.rank() != 0) return 0;
  std::printf("recforge bench sharding: %s, %zu tables x %lld rows, dim %lld, global batch %lld, %d ranks, %d threads\n",
              cfg.get_string("model.type").c_str(), sizes.size(), static_cast<long long>(sizes.empty() ? 0 : sizes[0]),
              static_cast<long long>(cfg.get_int("model.embedding_dim")), static_cast<long long>(batch),
              pg.world_size(), num_threads());
  std::printf("%-11s %12s %14s %14s %16s %18s\n", "sharding", "step ms", "all-to-all ms", "sent KiB/step",
              "plan MiB/rank", "allocated MiB/rank");
  for (size_t i = 0; i < modes.size(); ++i) {
    const ModeResult& r = results[i];
    std::printf("%-11s %12.3f %14.3f %14.1f %16.3f %18.3f\n", modes[i].c_str(), r.step_ms, r.a2a_ms, r.a2a_kib,
                r.max_planned / 1048576.0, r.allocated / 1048576.0);
  }
  for (size_t i = 0; i < modes.size(); ++i) {
    const ModeResult& r = results[i];
    std::printf("{\"bench\": \"sharding\", \"mode\": \"%s\", \"ranks\": %d, \"median_step_ms\": %.4f, "
                "\"all_to_all_ms_per_step\": %.4f, \"sent_kib_per_step_rank0\": %.1f, \"plan_bytes_max_rank\": %lld, "
                "\"allocated_bytes_max_rank\": %lld}\n",
                modes[i].c_str(), pg.world_size(), r.step_ms, r.a2a_ms, r.a2a_kib, static_cast<long long>(r.max_planned),
                static_cast<long long>(r.allocated));
  }
  return 0;
}

}  // namespace rf::cli
