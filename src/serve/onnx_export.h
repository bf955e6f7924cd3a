// ONNX export of a DLRM or DCNv2 model (opset 13), written with a minimal protobuf encoder of the few
// ModelProto fields it needs: no protobuf library, no Python. Inputs and outputs are documented in
// docs/export_format.md ("ONNX export").
#pragma once

#include <string>

#include "dataloader/schema.h"
#include "src/model/model.h"

namespace rf::serve {

// Writes `model` (its current weights; fp32 initializers) to `path`. Inputs: "dense" [B, num_dense]
// float (already log-transformed); per sparse feature t, "sparse_<t>" int64: [B] for a categorical
// column, [B, L] for a multi-hot one together with "sparse_<t>_mask" [B, L] float (1 = element,
// 0 = padding). Outputs: "logit" [B, 1] and "probability" [B, 1] (sigmoid).
void write_onnx(const std::string& path, Model& model, const data::ColumnSchema& schema);

}  // namespace rf::serve
