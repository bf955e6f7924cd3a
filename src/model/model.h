// The models recforge trains (DLRM, DCNv2) behind one interface: forward to logits, backward from the
// logits' gradient into every parameter's gradient. Shapes come from ModelConfig, built from [model].
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "kernels/embedding_bag.h"
#include "src/core/tensor.h"
#include "src/model/parameter.h"

namespace rf {

class Config;
class ModelParallel;

struct ModelConfig {
  std::string type = "dlrm";            // dlrm | dcnv2
  int64_t num_dense = 13;
  std::vector<int64_t> table_sizes;     // rows of each categorical feature's table
  int64_t embedding_dim = 16;
  std::vector<int64_t> bottom_mlp;      // output widths; the last equals embedding_dim
  std::vector<int64_t> top_mlp;         // output widths; the last is 1 (the logit)
  bool self_interaction = false;        // DLRM: include <z_i, z_i>
  int64_t cross_layers = 3;             // DCNv2
  int64_t cross_rank = 0;               // DCNv2: 0 = full-rank W
  PoolMode pooling = PoolMode::kSum;
  uint64_t seed = 1234;
  DType compute = DType::kF32;          // train.precision: the GEMMs' operand type (weights stay fp32)
  // train.device: where parameters, activations and the step live. Weights are initialised on the
  // host from `seed` (the same values on every device) and then copied there.
  Device device = Device::cpu();
  // Model parallelism (src/model/model_parallel.h): sharded tables and tensor-parallel top MLP.
  // nullptr: the single-process model.
  std::shared_ptr<ModelParallel> parallel;

  // Throws ConfigError naming the key when the shapes cannot work together, or when the device cannot
  // compute in `compute` (fp16 needs CUDA).
  void validate() const;
};

// Inputs of one batch, on the model's device.
struct ModelInput {
  Tensor dense;                 // [batch, num_dense] fp32, already log-transformed
  std::vector<Tensor> indices;  // per table: [nnz] int64
  std::vector<Tensor> offsets;  // per table: [batch + 1] int64
  int64_t batch() const { return dense.size(0); }
};

class Model {
 public:
  virtual ~Model() = default;
  // Writes logits [batch] fp32. Keeps what backward needs until the next forward.
  virtual void forward(const ModelInput& in, Tensor& logits) = 0;
  // dlogits [batch]: fills the gradient of every parameter (dense grads overwritten, sparse grads set).
  virtual void backward(const ModelInput& in, const Tensor& dlogits) = 0;
  virtual ParameterList parameters() = 0;
  // Installs (or, with an empty hook, removes) the hook every later backward calls per dense parameter.
  virtual void set_grad_ready_hook(GradReadyHook hook) = 0;
  // Installs (or removes) the update every later backward hands its embedding tables to (see
  // EmbeddingUpdate). Sharded tables keep their own path and never call it.
  virtual void set_embedding_update(EmbeddingUpdate update) = 0;
  virtual const ModelConfig& config() const = 0;
};

// Builds the model named by cfg.type, initialised from cfg.seed as the DLRM reference does, with its
// parameters (and dense gradients) on cfg.device.
std::unique_ptr<Model> make_model(const ModelConfig& cfg);

// Reads [model] from the config; table_sizes may be overridden by the data (hash buckets).
ModelConfig model_config_from(const Config& cfg, int64_t num_dense, const std::vector<int64_t>& table_sizes);

// "cpu", "cuda" (device 0) or "cuda:<k>" (train.device); throws ConfigError otherwise.
Device parse_device(const std::string& name);

// Parameter count and bytes (fp32), for the start-up summary.
int64_t parameter_count(const ParameterList& params);

}  // namespace rf
