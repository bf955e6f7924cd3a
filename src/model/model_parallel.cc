// The model-parallel context and its construction from [parallel] (see model_parallel.h).
#include "src/model/model_parallel.h"

#include "parallel/mpi_communicator.h"
#include "parallel/nccl_communicator.h"
#include "parallel/process_group.h"
#include "src/config/config.h"
#include "src/core/error.h"
#include "src/core/log.h"
#include "src/model/model.h"

namespace rf {

ModelParallel::ModelParallel(std::unique_ptr<Communicator> embedding, std::unique_ptr<Communicator> tensor,
                             std::shared_ptr<const ShardingPlan> plan, std::unique_ptr<Communicator> embedding_device)
    : embedding_(std::move(embedding)), tensor_(std::move(tensor)), embedding_device_(std::move(embedding_device)),
      plan_(std::move(plan)) {
  RF_CHECK(embedding_ && tensor_, "ModelParallel: both communicators are needed");
  RF_CHECK(!embedding_device_ || (embedding_device_->size() == embedding_->size() &&
                                  embedding_device_->rank() == embedding_->rank()),
           "ModelParallel: the device embedding group differs from the host one");
  RF_CHECK(!plan_ || plan_->world == embedding_->size(), "ModelParallel: plan over ", plan_ ? plan_->world : 0,
           " ranks, embedding group of ", embedding_->size());
}

void ModelParallel::register_shard(Shard s) { shards_.push_back(std::move(s)); }

std::map<std::string, Tensor> ModelParallel::gather_full_parameters(const ParameterList& local) {
  std::map<std::string, Tensor> out;
  for (const Parameter* p : local)
    if (p->sharding == Sharding::kReplicated) out[p->name] = p->value;
  Tensor none;
  for (const Shard& s : shards_) {
    const Parameter* p = s.local;
    out[s.name] = gather_shards_2d(*s.comm, p ? p->value : none, p ? p->row_begin : 0, p ? p->col_begin : 0,
                                   s.full_rows, s.full_cols);
  }
  return out;
}

std::map<std::string, Tensor> ModelParallel::gather_full_state(const ParameterList& local,
                                                               const std::vector<std::pair<std::string, Tensor*>>& state,
                                                               const std::vector<StateKind>& kinds) {
  std::map<std::string, Tensor*> by_name(state.begin(), state.end());
  auto local_state = [&](const std::string& key) -> Tensor* {
    auto it = by_name.find(key);
    RF_CHECK(it != by_name.end(), "gather_full_state: no optimizer state '", key, "' on this rank");
    return it->second;
  };
  std::map<std::string, Tensor> out;
  for (const Parameter* p : local)
    if (p->sharding == Sharding::kReplicated)
      for (const StateKind& k : kinds)
        if (k.sparse == p->sparse) out[k.kind + "/" + p->name] = *local_state(k.kind + "/" + p->name);
  Tensor none;
  for (const Shard& s : shards_)
    for (const StateKind& k : kinds) {
      if (k.sparse != s.sparse) continue;
      const std::string key = k.kind + "/" + s.name;
      const Parameter* p = s.local;
      const Tensor& t = p ? *local_state(key) : none;
      if (!k.per_row) {
        out[key] = gather_shards_2d(*s.comm, t, p ? p->row_begin : 0, p ? p->col_begin : 0, s.full_rows, s.full_cols);
        continue;
      }
      // Per-row state covers the piece's rows; column shards of one table hold identical copies of it
      // (their row statistics are over the full row, Parameter::full_row_sums), which the gather
      // accepts as replicas.
      out[key] = gather_shards_2d(*s.comm, t, p ? p->row_begin : 0, 0, s.full_rows, 1);
    }
  return out;
}

namespace {

// Rows [r0, r0 + nr) x columns [c0, c0 + nc) of a 1-D ([rows], nc = 1) or 2-D fp32 tensor.
Tensor block_of(const Tensor& full, int64_t r0, int64_t c0, int64_t nr, int64_t nc) {
  const Tensor host = full.on(Device::cpu());
  const int64_t cols = host.dim() == 2 ? host.size(1) : 1;
  Tensor out = Tensor::empty(host.dim() == 2 ? Shape{nr, nc} : Shape{nr}, DType::kF32);
  const float* src = host.data<float>();
  float* dst = out.data<float>();
  for (int64_t i = 0; i < nr; ++i)
    for (int64_t j = 0; j < nc; ++j) dst[i * nc + j] = src[(r0 + i) * cols + c0 + j];
  return out;
}

}  // namespace

void load_blocks_from_full(const ParameterList& local, const std::map<std::string, Tensor>& full_params,
                           const std::vector<std::pair<std::string, Tensor*>>& state,
                           const std::map<std::string, Tensor>* full_state, const std::string& where) {
  std::map<std::string, const Parameter*> by_name;
  for (const Parameter* p : local) by_name[p->name] = p;
  // The full shape of a parameter and of its per-row state.
  auto full_shape = [](const Parameter& p) {
    if (p.sharding == Sharding::kReplicated) return p.value.shape();
    return p.value.dim() == 1 ? Shape{p.full_rows} : Shape{p.full_rows, p.full_cols};
  };
  auto full_rows = [](const Parameter& p) { return p.sharding == Sharding::kReplicated ? p.value.size(0) : p.full_rows; };
  auto find = [&](const std::map<std::string, Tensor>& m, const std::string& name, const Shape& want,
                  const char* what) -> const Tensor& {
    auto it = m.find(name);
    if (it == m.end()) throw DataError(where + ": " + what + " '" + name + "' missing");
    if (it->second.shape() != want || it->second.dtype() != DType::kF32)
      throw DataError(where + ": " + what + " '" + name + "' has shape " + shape_str(it->second.shape()) + " " +
                      dtype_name(it->second.dtype()) + ", expected " + shape_str(want) + " fp32");
    return it->second;
  };
  // Check every tensor before writing any, so a bad file leaves the model as it was.
  std::vector<std::pair<Tensor*, Tensor>> copies;
  for (const Parameter* p : local) {
    const Tensor& f = find(full_params, p->name, full_shape(*p), "parameter");
    const int64_t nc = p->value.dim() == 2 ? p->value.size(1) : 1;
    copies.emplace_back(const_cast<Tensor*>(&p->value), block_of(f, p->row_begin, p->col_begin, p->value.size(0), nc));
  }
  if (full_state) {
    for (const auto& [key, t] : state) {
      const size_t slash = key.rfind('/');
      auto pit = slash == std::string::npos ? by_name.end() : by_name.find(key.substr(slash + 1));
      RF_CHECK(pit != by_name.end(), "load_blocks_from_full: optimizer state '", key, "' of no parameter");
      const Parameter& p = *pit->second;
      if (t->shape() == p.value.shape()) {  // element-wise: the parameter's block
        const Tensor& f = find(*full_state, key, full_shape(p), "optimizer state");
        const int64_t nc = p.value.dim() == 2 ? p.value.size(1) : 1;
        copies.emplace_back(t, block_of(f, p.row_begin, p.col_begin, p.value.size(0), nc));
      } else {  // per row: the parameter's rows
        RF_CHECK(t->dim() == 1 && t->size(0) == p.value.size(0), "load_blocks_from_full: optimizer state '", key,
                 "' is ", shape_str(t->shape()), ", neither element-wise nor per row of ", shape_str(p.value.shape()));
        const Tensor& f = find(*full_state, key, Shape{full_rows(p)}, "optimizer state");
        copies.emplace_back(t, block_of(f, p.row_begin, 0, p.value.size(0), 1));
      }
    }
  }
  for (auto& [dst, src] : copies) dst->copy_from(src);
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
  // Tables on a GPU: their pooled embeddings and gradients cross over NCCL on that GPU.
  std::unique_ptr<Communicator> device_comm;
  if (sharded && mc.device.is_cuda()) device_comm = make_nccl_communicator(grid.data_parallel, mc.device.index);
  return std::make_shared<ModelParallel>(std::make_unique<MpiCommunicator>(grid.data_parallel),
                                         std::make_unique<MpiCommunicator>(grid.tensor_parallel),
                                         sharded ? plan : nullptr, std::move(device_comm));
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
