// Model construction from the configuration, and the checks that make shape errors config errors.
#include "src/model/model.h"

#include "src/config/config.h"
#include "src/core/allocator.h"
#include "src/model/dcnv2.h"
#include "src/model/dlrm.h"
#include "src/model/model_parallel.h"

namespace rf {

void ModelConfig::validate() const {
  auto fail = [](const std::string& key, const std::string& what) { throw ConfigError("[model] " + key + ": " + what); };
  if (type != "dlrm" && type != "dcnv2") fail("type", "expected dlrm or dcnv2, got '" + type + "'");
  if (table_sizes.empty()) fail("table_sizes", "at least one categorical feature is needed");
  for (int64_t rows : table_sizes)
    if (rows < 1) fail("table_sizes", "every table needs at least one row, got " + std::to_string(rows));
  if (embedding_dim < 1) fail("embedding_dim", "expected >= 1");
  if (num_dense < 1) fail("bottom_mlp", "the data has no dense features for the bottom MLP");
  if (bottom_mlp.empty() || bottom_mlp.back() != embedding_dim)
    fail("bottom_mlp", "the last width must equal embedding_dim (" + std::to_string(embedding_dim) + ")");
  if (top_mlp.empty() || top_mlp.back() != 1) fail("top_mlp", "the last width must be 1 (the logit)");
  if (type == "dcnv2" && cross_layers < 0) fail("cross_layers", "expected >= 0");
  if (type == "dcnv2" && cross_rank < 0) fail("cross_rank", "expected >= 0 (0 = full rank)");
  // The CPU GEMMs take fp32 or bf16 operands; fp16 (with loss scaling) is CUDA's.
  if (compute == DType::kF16 && !device.is_cuda())
    throw ConfigError("train.precision=fp16 needs the CUDA backend; use bf16 or fp32 on the CPU, or train.device=cuda");
  if (device.is_cuda() && parallel) {
    // Sharded tables run on the GPU (NCCL for the pooled embeddings and their gradients); these parts
    // of them are host code so far.
    if (parallel->tp_size() > 1)
      throw ConfigError("train.device=cuda: tensor parallelism ([parallel] tensor_parallel > 1) runs on the CPU only so far");
    const ShardingPlan* plan = parallel->plan();
    for (size_t t = 0; plan && t < plan->placement.size(); ++t) {
      if (plan->placement[t].kind == ShardingKind::kReplicated) continue;
      if (pooling == PoolMode::kMean)
        throw ConfigError("train.device=cuda: sharded tables with [model] pooling = mean run on the CPU only so far; "
                          "use pooling = sum or replicated tables");
      if (plan->placement[t].kind == ShardingKind::kColumn && plan->state_floats_per_row > 0)
        throw ConfigError("train.device=cuda: table " + std::to_string(t) +
                          " is column-sharded with a row-wise sparse optimizer, whose full-row statistics are "
                          "exchanged on the host so far; shard it by table or row, or use [optimizer] sparse = sgd");
    }
  }
  if (compute != DType::kF32 && compute != DType::kBF16 && compute != DType::kF16)
    throw ConfigError(std::string("train.precision: expected fp32, bf16 or fp16, got ") + dtype_name(compute));
}

std::unique_ptr<Model> make_model(const ModelConfig& cfg) {
  cfg.validate();
  if (cfg.device.is_cuda() && cfg.device.index >= cuda_device_count())
    throw ConfigError("train.device=" + cfg.device.str() + ": " + std::to_string(cuda_device_count()) +
                      " CUDA device(s) visible to this process (or recforge was built without CUDA)");
  std::unique_ptr<Model> model;
  if (cfg.type == "dlrm") model = std::make_unique<Dlrm>(cfg);
  else model = std::make_unique<Dcnv2>(cfg);
  if (!cfg.device.is_cpu()) {
    // Initialised on the host (identical weights on every device), then moved: the layers keep
    // Parameter objects by value, so replacing the tensors moves the model.
    for (Parameter* p : model->parameters()) {
      p->value = p->value.to(cfg.device);
      if (p->grad.defined()) p->grad = p->grad.to(cfg.device);
    }
  }
  return model;
}

Device parse_device(const std::string& name) {
  if (name == "cpu") return Device::cpu();
  if (name == "cuda") return Device::cuda(0);
  if (name.rfind("cuda:", 0) == 0) {
    const std::string idx = name.substr(5);
    if (!idx.empty() && idx.find_first_not_of("0123456789") == std::string::npos)
      return Device::cuda(std::stoi(idx));
  }
  throw ConfigError("train.device: expected cpu, cuda or cuda:<index>, got '" + name + "'");
}

ModelConfig model_config_from(const Config& cfg, int64_t num_dense, const std::vector<int64_t>& table_sizes) {
  ModelConfig m;
  m.type = cfg.get_string("model.type");
  m.num_dense = num_dense;
  std::vector<int64_t> configured = cfg.get_int_list("model.table_sizes");
  m.table_sizes = configured.empty() ? table_sizes : configured;
  if (!configured.empty() && configured.size() != table_sizes.size())
    throw ConfigError("[model] table_sizes: " + std::to_string(configured.size()) + " tables given, the data has " +
                      std::to_string(table_sizes.size()) + " categorical features");
  m.embedding_dim = cfg.get_int("model.embedding_dim");
  m.bottom_mlp = cfg.get_int_list("model.bottom_mlp");
  m.top_mlp = cfg.get_int_list("model.top_mlp");
  m.self_interaction = cfg.get_bool("model.self_interaction");
  m.cross_layers = cfg.get_int("model.cross_layers");
  m.cross_rank = cfg.get_int("model.cross_rank");
  m.pooling = parse_pool_mode(cfg.get_string("model.pooling"));
  m.seed = static_cast<uint64_t>(cfg.get_int("model.seed"));
  m.compute = parse_dtype(cfg.get_string("train.precision"));  // schema allows fp32|bf16|fp16 only
  m.device = parse_device(cfg.get_string("train.device"));
  m.validate();
  return m;
}

int64_t parameter_count(const ParameterList& params) {
  int64_t n = 0;
  for (const Parameter* p : params) n += p->value.numel();
  return n;
}

}  // namespace rf
