// What a model needs to run model-parallel: the communicator its embedding tables are sharded over
// (the data-parallel group: ranks that see different samples), the tensor-parallel communicator its
// dense towers are split over (ranks that see the same samples), the sharding plan, and all-to-all
// counters for benchmarks. A model built without one (ModelConfig::parallel == nullptr) is the
// single-process model, bit for bit.
#pragma once

#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "parallel/communicator.h"
#include "parallel/sharding_plan.h"
#include "src/model/parameter.h"

namespace rf {

class Config;
struct ModelConfig;
struct ParallelGrid;

struct AllToAllStats {
  double seconds = 0;  // wall time inside the embedding all-to-alls (forward and backward)
  int64_t bytes = 0;   // bytes this rank sent in them
  int64_t calls = 0;
};

class ModelParallel {
 public:
  // plan: over embedding->size() ranks; null means every table replicated. tensor: size 1 for none.
  // embedding_device: the same group as `embedding` on the model's GPU (NCCL), for the pooled
  // embeddings and their gradients when the tables live there; null on the CPU.
  ModelParallel(std::unique_ptr<Communicator> embedding, std::unique_ptr<Communicator> tensor,
                std::shared_ptr<const ShardingPlan> plan, std::unique_ptr<Communicator> embedding_device = nullptr);

  // Host collectives of the embedding group: batch sizes, lookup indices, gathers of full tensors.
  Communicator& embedding_comm() { return *embedding_; }
  // Where the float payloads of the embedding all-to-alls go: NCCL on the tables' GPU, else the host one.
  Communicator& embedding_payload_comm() { return embedding_device_ ? *embedding_device_ : *embedding_; }
  Communicator& tp_comm() { return *tensor_; }
  int tp_size() const { return tensor_->size(); }
  const ShardingPlan* plan() const { return plan_.get(); }

  AllToAllStats a2a;

  // Where a sharded parameter's blocks live: the group they are gathered over and this rank's block
  // (null: another rank owns the whole table). Layers register each sharded parameter at construction,
  // in the same order on every rank.
  struct Shard {
    std::string name;
    Communicator* comm = nullptr;
    const Parameter* local = nullptr;
    int64_t full_rows = 0, full_cols = 0;  // 1-D: full_cols = 1
    bool sparse = false;
  };
  void register_shard(Shard s);
  // Every parameter of the model in full: replicated ones as they are, sharded ones gathered. A
  // collective over the whole world: every rank calls it with its own parameter list.
  std::map<std::string, Tensor> gather_full_parameters(const ParameterList& local);

  // One kind of optimizer state as ParamGroupOptimizer::state() names it ("dense.exp_avg",
  // "sparse.momentum1"): whether it belongs to sparse parameters, and whether it holds one value per
  // row ([rows], row-wise Adagrad) rather than one per element (the parameter's shape).
  struct StateKind {
    std::string kind;
    bool sparse = false, per_row = false;
  };
  // The full optimizer state for a checkpoint, named "<kind>/<parameter>": element-wise state is
  // gathered as its parameter is, per-row state along the rows. A collective like
  // gather_full_parameters. Per-row state of a column-sharded parameter is the same on every column
  // shard (row statistics over the full row), so any shard's copy is the full tensor.
  std::map<std::string, Tensor> gather_full_state(const ParameterList& local,
                                                  const std::vector<std::pair<std::string, Tensor*>>& state,
                                                  const std::vector<StateKind>& kinds);

 private:
  std::unique_ptr<Communicator> embedding_, tensor_, embedding_device_;
  std::shared_ptr<const ShardingPlan> plan_;
  std::vector<Shard> shards_;
};

// Copies this rank's block of full tensors (a checkpoint's or model.init's, by name) into its
// parameters and, when `full_state` is given, its optimizer state; the blocks are read from the
// Parameter's row/column range, so a checkpoint written with another world size or sharding loads.
// Not a collective. Throws DataError naming `where` and the tensor for a missing or misshapen one.
void load_blocks_from_full(const ParameterList& local, const std::map<std::string, Tensor>& full_params,
                           const std::vector<std::pair<std::string, Tensor*>>& state,
                           const std::map<std::string, Tensor>* full_state, const std::string& where);

// From [parallel] embedding_sharding, table_sharding, memory_budget_mb and tensor_parallel, and the
// sparse optimizer: plans the tables over the grid's data-parallel group, prints the plan on world
// rank 0, and returns the context; nullptr when every table is replicated and tensor_parallel is 1
// (plain data parallelism). Throws ConfigError when the plan does not fit the budget.
std::shared_ptr<ModelParallel> make_model_parallel(const Config& cfg, const ParallelGrid& grid, const ModelConfig& mc);

// The plan make_model_parallel would make, without communicators (benchmarks, tests).
ShardingPlan plan_for(const Config& cfg, int world, const ModelConfig& mc);

// Bytes of the parameters and optimizer-state tensors this rank allocated for its sparse (embedding)
// parameters: what the plan's per-rank number predicts.
int64_t embedding_bytes_allocated(const ParameterList& params,
                                  const std::vector<std::pair<std::string, Tensor*>>& optimizer_state);

}  // namespace rf
