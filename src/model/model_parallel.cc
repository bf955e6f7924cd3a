// The model-parallel context and its construction from [parallel] (see model_parallel.h).
#include "src/model/model_parallel.h"

#include "parallel/mpi_communicator.h"
#include "parallel/process_group.h"
#include "src/config/config.h"
#include "src/core/log.h"
#include "src/model/model.h"

namespace rf {

ModelParallel::ModelParallel(std::unique_ptr<Communicator> embedding, std::unique_ptr<Communicator> tensor,
                             std::shared_ptr<const ShardingPlan> plan)
    : embedding_(std::move(embedding)), tensor_(std::move(tensor)), plan_(std::move(plan)) {
  RF_CHECK(embedding_ && tensor_, "ModelParallel: both communicators are needed");
  RF_CHECK(!plan_ || plan_->world == embedding_->size(), "ModelParallel: plan over ", plan_ ? plan_->world : 0,
           " ranks, embedding group of ", embedding_->size());
}

void ModelParallel::register_gather(std::string name, std::function<Tensor()> gather) {
  gathers_.emplace_back(std::move(name), std::move(gather));
}

std::map<std::string, Tensor> ModelParallel::gather_full_parameters(const ParameterList& local) {
  std::map<std::string, Tensor> out;
  for (const Parameter* p : local)
    if (p->sharding == Sharding::kReplicated) out[p->name] = p->value;
  for (auto& [name, gather] : gathers_) out[name] = gather();
  return out;
}

ShardingPlan plan_for(const Config& cfg, int world, const ModelConfig& mc) {
  std::vector<TableSpec> tables;
  for (int64_t rows : mc.table_sizes) tables.push_back({rows, mc.embedding_dim, 1.0});
  PlannerOptions o;
  o.world = world;
  o.budget_bytes = cfg.get_int("parallel.memory_budget_mb") * 1024 * 1024;
  o.mode = cfg.get_string("parallel.embedding_sharding");
  o.overrides = parse_table_overrides(cfg.get_string("parallel.table_sharding"),
                                      static_cast<int>(tables.size()), "[parallel] table_sharding");
  const std::string& sparse = cfg.get_string("optimizer.sparse");
  o.state_floats_per_row = sparse == "sgd" ? 0 : 1;  // row-wise Adagrad: one accumulator per held row
  return plan_sharding(tables, o);
}

std::shared_ptr<ModelParallel> make_model_parallel(const Config& cfg, const ParallelGrid& grid, const ModelConfig& mc) {
  auto plan = std::make_shared<ShardingPlan>(plan_for(cfg, grid.dp_size, mc));
  const bool sharded = !plan->all_replicated();
  if (!sharded && grid.tp_size == 1) return nullptr;
  if (sharded) log_info(plan->describe());
  if (grid.tp_size > 1)
    log_info("tensor parallelism: ", grid.tp_size, " ranks per group split the ", mc.type == "dcnv2" ? "deep tower" : "top MLP",
             " (column- then row-parallel pairs), ", grid.dp_size, " data-parallel group(s)");
  return std::make_shared<ModelParallel>(std::make_unique<MpiCommunicator>(grid.data_parallel),
                                         std::make_unique<MpiCommunicator>(grid.tensor_parallel),
                                         sharded ? plan : nullptr);
}

int64_t embedding_bytes_allocated(const ParameterList& params,
                                  const std::vector<std::pair<std::string, Tensor*>>& optimizer_state) {
  int64_t bytes = 0;
  for (const Parameter* p : params) {
    if (!p->sparse) continue;
    bytes += static_cast<int64_t>(p->value.nbytes());
    const std::string suffix = "/" + p->name;  // state keys read "<optimizer>.<kind>/<parameter name>"
    for (const auto& [key, t] : optimizer_state)
      if (key.size() >= suffix.size() && key.compare(key.size() - suffix.size(), suffix.size(), suffix) == 0)
        bytes += static_cast<int64_t>(t->nbytes());
  }
  return bytes;
}

}  // namespace rf
