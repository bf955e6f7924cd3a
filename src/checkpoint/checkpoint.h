// Checkpoints: one directory per step, written under a temporary name and renamed only when every
// file is on disk, with a manifest holding the format version, the config, the world size and a
// checksum of every file. A checkpoint that fails any check is refused with the file and the check
// named; `latest_valid` then falls back to the previous complete one.
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "src/core/tensor.h"
#include "src/model/parameter.h"

namespace rf {

inline constexpr int kCheckpointFormatVersion = 1;

// Everything besides tensors that a bit-exact resume needs.
struct TrainerState {
  int64_t step = 0;             // optimizer steps taken
  std::string loader_position;  // data::LoaderPosition::str() of this rank's source: the next batch
  int64_t global_batch = 0;     // train.batch_size the position counts in
  int world_size = 1;           // ranks of the run that wrote the checkpoint (from the manifest)
  uint64_t model_seed = 0;     // for the record: the run's initialisation seed
  double last_loss = 0;
  // fp16 dynamic loss scaling (kernels/loss_scaler.h); scale 0 = no scaler in the run.
  float loss_scale = 0;
  int loss_scale_good_steps = 0;
  int64_t loss_scale_skipped = 0;
  std::string sharding = "replicated";  // the embedding/tensor sharding the run used, for the record
};

struct CheckpointContents {
  const ParameterList* params = nullptr;                              // model weights (fp32)
  std::vector<std::pair<std::string, Tensor*>> optimizer_state;       // named fp32 state tensors
  TrainerState trainer;
  std::string config_dump;                                            // the effective config (INI)
  int world_size = 1;
};

// Writes `root/step-<N>` (N = trainer.step) atomically and deletes all but the newest `keep`
// complete checkpoints. Returns the final directory.
std::string save_checkpoint(const std::string& root, const CheckpointContents& c, int keep);

// Verifies the manifest and every file's checksum; throws DataError naming the file and the check.
void verify_checkpoint(const std::string& dir);

// Newest checkpoint under `root` that verifies; refused ones are reported through `warnings`.
std::optional<std::string> latest_valid_checkpoint(const std::string& root, std::vector<std::string>* warnings);

// Loads weights, optimizer state (every named tensor must be present with its shape) and trainer
// state from a verified checkpoint.
TrainerState load_checkpoint(const std::string& dir, const ParameterList& params,
                             const std::vector<std::pair<std::string, Tensor*>>& optimizer_state);

// Model parallelism: the full tensors of a verified checkpoint by name (weights and optimizer state),
// for each rank to take its block of; returns the trainer state as load_checkpoint does.
TrainerState read_checkpoint(const std::string& dir, std::map<std::string, Tensor>* params,
                             std::map<std::string, Tensor>* optimizer_state);

}  // namespace rf
