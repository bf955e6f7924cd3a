// The training loop on one process: read batches, forward, loss, backward, optimizer, evaluate every
// N steps and at the end with exact AUC/logloss, write a JSON-lines metrics file, save the weights,
// and report a per-phase time breakdown.
#pragma once

#include <cstdint>
#include <memory>
#include <string>

#include "dataloader/batch.h"
#include "src/model/model.h"

namespace rf {

class Config;
class PhaseTimers;
class Communicator;
class GradientBuckets;
class ParamGroupOptimizer;
class DynamicLossScaler;
struct LrSchedule;

struct EvalResult {
  double auc = 0;
  double logloss = 0;
  int64_t rows = 0;
};

struct TrainSummary {
  int64_t steps = 0;
  int64_t samples = 0;
  double seconds = 0;
  double last_loss = 0;
  EvalResult test;
  bool evaluated = false;
};

class Trainer {
 public:
  // The model's shapes from [model] and the data schema of [data].
  explicit Trainer(const Config& cfg);
  // The model given explicitly (benchmarks on generated data); everything else from cfg.
  Trainer(const Config& cfg, const ModelConfig& model);
  ~Trainer();

  // Runs the configured epochs/steps; prints progress to stderr and the final
  // `test auc=... logloss=...` line to stdout.
  TrainSummary run();

  // Evaluates the current weights on a loaded data set.
  EvalResult evaluate(const data::Batch& data);

  // One optimisation step on one global batch, of which this rank trains on its share (all of it in
  // a world of one); returns the global batch's mean loss before the update.
  double train_step(const data::Batch& batch);

  // One step on this rank's share `local` of a global batch of `global_rows` rows (-1: sum the shares
  // over the ranks).
  double train_step_local(const data::Batch& local, int64_t global_rows, int64_t* global_rows_out = nullptr);

  // This rank's rows [begin, end) of a global batch of `rows` rows: contiguous, near-equal shares.
  std::pair<int64_t, int64_t> rank_share(int64_t rows) const;

  Model& model() { return *model_; }
  // Model parallelism (sharded tables, tensor-parallel MLP): nullptr for plain data parallelism.
  ModelParallel* model_parallel() { return mp_.get(); }
  ParamGroupOptimizer& optimizer() { return *optimizer_; }
  // Per-phase seconds so far (data wait, forward, backward, optimizer, evaluation).
  const PhaseTimers& timers() const;
  // train.precision=fp16: the dynamic loss scaler (skipped steps, current scale); nullptr otherwise.
  const DynamicLossScaler* loss_scaler() const;
  // train.device: where the model, the batches of a step and the optimizer run.
  Device device() const { return model_->config().device; }
  // train.cuda_graph: steps run as replays of the captured step so far (0 without it).
  int64_t cuda_graph_replays() const;

 private:
  const Config& cfg_;
  std::unique_ptr<Model> model_;
  ParameterList params_;
  std::unique_ptr<ParamGroupOptimizer> optimizer_;
  std::unique_ptr<LrSchedule> schedule_;
  // Data parallelism over MPI ranks (a world of one needs no communication at all).
  int dp_rank_ = 0, dp_size_ = 1;
  std::unique_ptr<Communicator> dp_;
  std::unique_ptr<GradientBuckets> buckets_;
  std::shared_ptr<ModelParallel> mp_;  // [parallel] embedding_sharding / tensor_parallel
  int tp_rank_ = 0;
  int64_t step_ = 0;
  int64_t epoch_ = 0;  // epoch of the next batch
  int64_t batch_size_ = 0;
  bool bounds_checks_ = true;  // train.bounds_checks
  bool deterministic_ = true;  // train.deterministic
  int64_t eval_batch_size_ = 0;
  struct Timing;
  std::unique_ptr<Timing> timing_;
  // train.cuda_graph: the captured step and the device buffers it reads; nullptr without it.
  struct GraphStep;
  std::unique_ptr<GraphStep> graph_;
  // The step as a replay of the captured one (capturing it first if needed); false when this batch
  // must run eagerly (the warm-up step, or shapes other than the captured ones).
  bool graph_step(const data::Batch& batch, double& loss);
};

}  // namespace rf
