// Optimizers for parameters on a CUDA device: the same algorithms, hyper-parameters and state names as
// src/optim/optimizer.h (so checkpoints move between CPU and GPU runs), run by the fused kernels of
// kernels/optim_fused.h: multi-tensor SGD/Adagrad/Adam/AdamW for the dense fp32 master weights (a few
// launches per step), SGD / row-wise Adagrad on the rows each embedding backward touched. State
// tensors live on the parameters' device. In a build without CUDA, make_device_optimizers throws.
#pragma once

#include <memory>
#include <string>

#include "src/optim/optimizer.h"

namespace rf {

// dense_name / sparse_name as make_optimizers. The returned group steps device parameters only.
std::unique_ptr<ParamGroupOptimizer> make_device_optimizers(const std::string& dense_name,
                                                            const std::string& sparse_name,
                                                            const OptimizerHyperparams& hp);

}  // namespace rf
