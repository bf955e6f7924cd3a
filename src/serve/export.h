// The serving export: one HDF5 file (schema in docs/export_format.md) holding the model type and
// hyper-parameters, the feature pipeline a server needs to turn raw TSV rows into model inputs, the
// dense weights, and full embedding tables in fp32, fp16 or int8 row-wise (FBGEMM fused-8-bit layout).
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "dataloader/schema.h"
#include "src/core/tensor.h"
#include "src/model/model.h"

namespace rf::serve {

inline constexpr const char* kExportFormat = "recforge-export";  // root attribute `format`
inline constexpr int64_t kExportSchemaVersion = 1;               // root attribute `schema_version`
inline constexpr const char* kDenseTransform = "log1p_clamp0";   // log(1 + max(x, 0)), empty -> 0

enum class Quantize { kNone, kFp16, kInt8 };
Quantize parse_quantize(const std::string& name);  // none | fp16 | int8; ConfigError otherwise
const char* quantize_name(Quantize q);             // "none", "fp16", "int8"
// The export's `embedding_storage` attribute: "fp32", "fp16", "int8_rowwise".
const char* storage_name(Quantize q);

// Row-wise 8-bit quantisation as FBGEMM's FloatToFused8BitRowwiseQuantized: per row
// bias = min, scale = (max - min) / 255, q = round((x - bias) / scale) in [0, 255]; value = q * scale + bias.
struct RowwiseInt8 {
  std::vector<uint8_t> q;  // [rows, dim]
  Tensor scale;            // [rows] fp32
  Tensor bias;             // [rows] fp32
};
RowwiseInt8 quantize_rowwise_int8(const Tensor& table);  // table [rows, dim] fp32
Tensor dequantize_rowwise_int8(const RowwiseInt8& q, int64_t rows, int64_t dim);
// What a server reading the table back sees: the table itself (none), rounded to fp16 and back, or
// quantised to int8 row-wise and dequantised.
Tensor round_trip(const Tensor& table, Quantize q);

// Writes the export of `model` (its current weights) to `path` (via <path>.tmp, renamed when complete).
void write_export(const std::string& path, Model& model, const data::ColumnSchema& schema, Quantize q);

// A validated export, its model built with make_model and loaded with the stored weights (quantised
// tables dequantised to fp32), ready to run forward on `device` (the CPU or a GPU).
struct LoadedExport {
  std::string path;
  ModelConfig config;
  data::ColumnSchema schema;
  std::string storage;  // embedding_storage
  std::unique_ptr<Model> model;
};
// Checks format, schema_version, every required attribute and dataset and their shapes against the
// hyper-parameters; DataError naming the file and the object on any mismatch.
LoadedExport load_export(const std::string& path, Device device = Device::cpu());

}  // namespace rf::serve
