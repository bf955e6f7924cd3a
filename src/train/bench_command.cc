// `recforge bench dlrm`: training throughput of the configured model on generated batches (uniform
// random table rows, random dense values and labels), so that only the step itself is measured.
// `recforge bench loader` and `recforge bench comm` are routed to their own programs.
#include <chrono>
#include <cstdio>
#include <random>

#include "dataloader/cuda/h2d_copy.h"
#include "dataloader/synth.h"
#include "kernels/threads.h"
#include "parallel/process_group.h"
#include "profiling/step_timer.h"
#include "src/cli/commands.h"
#include "src/config/config.h"
#include "src/core/allocator.h"
#include "src/train/trainer.h"

namespace rf::cli {

namespace {

// The step's queued kernels finished (a GPU step returns before its optimizer kernels have run).
void wait_for(const Trainer& trainer) {
  if (trainer.device().is_cuda()) device_synchronize(trainer.device().index);
}

}  // namespace

// Median training-step time of the [model] on generated batches, with the gradient all-reduce
// overlapped with the backward or not (meaningful under mpirun with several ranks).
double median_step_ms(const Config& cfg, bool overlap) {
  Config c = cfg.with_overrides({std::string("--parallel.overlap=") + (overlap ? "true" : "false")});
  int64_t tables = c.get_int("bench.tables");
  std::vector<int64_t> sizes(static_cast<size_t>(tables), c.get_int("bench.rows_per_table"));
  const int64_t kNumDense = 13;
  ModelConfig mc = model_config_from(c, kNumDense, sizes);
  Trainer trainer(c, mc);
  data::Batch batch = data::random_batch(c.get_int("train.batch_size"), kNumDense, mc.table_sizes, 5);
  for (int64_t i = 0; i < c.get_int("bench.warmup"); ++i) trainer.train_step(batch);
  std::vector<double> ms;
  for (int64_t i = 0; i < c.get_int("bench.steps"); ++i) {
    auto t0 = std::chrono::steady_clock::now();
    trainer.train_step(batch);
    ms.push_back(std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count());
  }
  std::sort(ms.begin(), ms.end());
  return ms[ms.size() / 2];
}

int run_bench(const Config& cfg) {
  const std::string& target = cfg.get_string("bench.target");
  if (target == "loader") return run_bench_loader(cfg);
  if (target == "sharding") return run_bench_sharding(cfg);  // model parallelism (src/cli/bench_sharding.cc)
  if (target == "comm") {
    int rc = run_bench_comm(cfg);
    if (rc != 0) return rc;
    double on = median_step_ms(cfg, true), off = median_step_ms(cfg, false);
    ProcessGroup& pg = ProcessGroup::get();
    if (pg.rank() == 0) {
      std::printf("\ntraining step of the [model] (%s), global batch %lld, %d ranks:\n", cfg.get_string("model.type").c_str(),
                  static_cast<long long>(cfg.get_int("train.batch_size")), pg.world_size());
      std::printf("%-28s %10.3f ms\n%-28s %10.3f ms\n", "overlap on (median step)", on, "overlap off (median step)", off);
      std::printf("{\"bench\": \"overlap\", \"ranks\": %d, \"step_ms_overlap\": %.4f, \"step_ms_no_overlap\": %.4f, "
                  "\"speedup\": %.4f}\n", pg.world_size(), on, off, off / on);
    }
    return 0;
  }
  int64_t tables = cfg.get_int("bench.tables");
  std::vector<int64_t> sizes(static_cast<size_t>(tables), cfg.get_int("bench.rows_per_table"));
  const int64_t kNumDense = 13;  // the Criteo layout
  ModelConfig mc = model_config_from(cfg, kNumDense, sizes);
  Trainer trainer(cfg, mc);
  int64_t batch = cfg.get_int("train.batch_size");
  int64_t steps = cfg.get_int("bench.steps");
  int64_t warmup = cfg.get_int("bench.warmup");

  // A few distinct batches so that the same rows are not hit every step. On a GPU they live on the device,
  // or (bench.host_batches) in page-locked host memory like the shard loader's, copied every step.
  const bool host_batches = cfg.get_bool("bench.host_batches") && trainer.device().is_cuda();
  std::vector<data::Batch> batches;
  std::vector<void*> pinned;
  for (uint64_t s = 0; s < 4; ++s) {
    data::Batch b = data::random_batch(batch, kNumDense, mc.table_sizes, 17 + s);
    if (!host_batches) {
      batches.push_back(data::batch_to(b, trainer.device()));
      continue;
    }
    for (const Tensor& t : data::tensors_of(b))
      if (data::pin_host_memory(t.raw(), t.nbytes())) pinned.push_back(t.raw());
    batches.push_back(b);
  }

  for (int64_t i = 0; i < warmup; ++i) trainer.train_step(batches[static_cast<size_t>(i) % batches.size()]);
  wait_for(trainer);
  PhaseTimers before = trainer.timers();
  const int64_t replays_before = trainer.cuda_graph_replays();
  std::vector<double> step_ms;
  auto start = std::chrono::steady_clock::now();
  for (int64_t i = 0; i < steps; ++i) {
    auto t0 = std::chrono::steady_clock::now();
    trainer.train_step(batches[static_cast<size_t>(i) % batches.size()]);
    wait_for(trainer);
    step_ms.push_back(std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count());
  }
  double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  std::vector<double> sorted = step_ms;
  std::sort(sorted.begin(), sorted.end());
  double median_ms = sorted[sorted.size() / 2];
  double samples_per_s = static_cast<double>(batch) / (median_ms / 1e3);

  const PhaseTimers& after = trainer.timers();
  std::printf("recforge bench %s: %s on %s, %lld tables x %lld rows, dim %lld, batch %lld, %d threads, %s\n",
              cfg.get_string("bench.target").c_str(), mc.type.c_str(), mc.device.str().c_str(),
              static_cast<long long>(tables),
              static_cast<long long>(sizes.empty() ? 0 : sizes[0]), static_cast<long long>(mc.embedding_dim),
              static_cast<long long>(batch), num_threads(), cfg.get_string("train.precision").c_str());
  std::printf("%-18s %10s\n", "phase", "ms/step");
  for (const char* phase : {"forward", "backward", "optimizer", "step (CUDA graph)"})
    std::printf("%-18s %10.3f\n", phase,
                1e3 * (after.seconds(phase) - before.seconds(phase)) / static_cast<double>(steps));
  std::printf("%-18s %10.3f (median of %lld steps; mean %.3f)\n", "step", median_ms, static_cast<long long>(steps),
              1e3 * seconds / static_cast<double>(steps));
  std::printf("%-18s %10lld of %lld timed steps\n", "CUDA graph replays",
              static_cast<long long>(trainer.cuda_graph_replays() - replays_before), static_cast<long long>(steps));
  std::printf("samples/s          %10.0f\n", samples_per_s);
  std::printf("{\"bench\": \"%s\", \"model\": \"%s\", \"device\": \"%s\", \"batch\": %lld, \"threads\": %d, "
              "\"precision\": \"%s\", \"fused_embedding_update\": %s, \"cuda_graph\": %s, \"host_batches\": %s, "
              "\"bounds_checks\": %s, \"deterministic\": %s, \"median_step_ms\": %.4f, \"samples_per_s\": %.1f}\n",
              cfg.get_string("bench.target").c_str(), mc.type.c_str(), mc.device.str().c_str(),
              static_cast<long long>(batch), num_threads(), cfg.get_string("train.precision").c_str(),
              cfg.get_bool("train.fused_embedding_update") ? "true" : "false",
              cfg.get_bool("train.cuda_graph") ? "true" : "false", host_batches ? "true" : "false",
              cfg.get_bool("train.bounds_checks") ? "true" : "false",
              cfg.get_bool("train.deterministic") ? "true" : "false", median_ms, samples_per_s);
  for (void* p : pinned) data::unpin_host_memory(p);  // before the batches' memory goes
  return 0;
}

}  // namespace rf::cli
