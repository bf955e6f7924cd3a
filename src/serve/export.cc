// Writing and loading the serving export (see export.h and docs/export_format.md).
#include "src/serve/export.h"

#include <algorithm>
#include <cmath>
#include <map>

#include "src/core/error.h"
#include "src/serve/h5.h"

namespace rf::serve {

Quantize parse_quantize(const std::string& name) {
  if (name == "none") return Quantize::kNone;
  if (name == "fp16") return Quantize::kFp16;
  if (name == "int8") return Quantize::kInt8;
  throw ConfigError("[export] quantize: expected none, fp16 or int8, got '" + name + "'");
}

const char* quantize_name(Quantize q) {
  switch (q) {
    case Quantize::kNone: return "none";
    case Quantize::kFp16: return "fp16";
    case Quantize::kInt8: return "int8";
  }
  return "?";
}

const char* storage_name(Quantize q) {
  switch (q) {
    case Quantize::kNone: return "fp32";
    case Quantize::kFp16: return "fp16";
    case Quantize::kInt8: return "int8_rowwise";
  }
  return "?";
}

RowwiseInt8 quantize_rowwise_int8(const Tensor& table) {
  RF_CHECK(table.dim() == 2 && table.dtype() == DType::kF32, "quantize_rowwise_int8: expected [rows, dim] fp32");
  const int64_t rows = table.size(0), dim = table.size(1);
  RowwiseInt8 out;
  out.q.resize(static_cast<size_t>(rows * dim));
  out.scale = Tensor::empty({rows}, DType::kF32);
  out.bias = Tensor::empty({rows}, DType::kF32);
  const float* x = table.data<float>();
  for (int64_t r = 0; r < rows; ++r) {
    const float* row = x + r * dim;
    float lo = row[0], hi = row[0];
    for (int64_t k = 1; k < dim; ++k) {
      lo = std::min(lo, row[k]);
      hi = std::max(hi, row[k]);
    }
    const float range = hi - lo;
    // The epsilon keeps a constant row (range 0) finite: every element then quantises to 0 and
    // dequantises to exactly `lo`.
    const float inv_scale = 255.0f / (range + 1e-8f);
    for (int64_t k = 0; k < dim; ++k) {
      long v = std::lrintf((row[k] - lo) * inv_scale);
      out.q[static_cast<size_t>(r * dim + k)] = static_cast<uint8_t>(std::clamp(v, 0L, 255L));
    }
    out.scale.data<float>()[r] = range / 255.0f;
    out.bias.data<float>()[r] = lo;
  }
  return out;
}

Tensor dequantize_rowwise_int8(const RowwiseInt8& q, int64_t rows, int64_t dim) {
  Tensor t = Tensor::empty({rows, dim}, DType::kF32);
  float* out = t.data<float>();
  const float* scale = q.scale.data<float>();
  const float* bias = q.bias.data<float>();
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t k = 0; k < dim; ++k) {
      size_t i = static_cast<size_t>(r * dim + k);
      out[i] = static_cast<float>(q.q[i]) * scale[r] + bias[r];
    }
  return t;
}

Tensor round_trip(const Tensor& table, Quantize q) {
  switch (q) {
    case Quantize::kNone: return table.clone();
    case Quantize::kFp16: {
      Tensor t = table.clone();
      float* p = t.data<float>();
      for (int64_t i = 0; i < t.numel(); ++i) p[i] = to_f32(to_f16(p[i]));
      return t;
    }
    case Quantize::kInt8: return dequantize_rowwise_int8(quantize_rowwise_int8(table), table.size(0), table.size(1));
  }
  return table;
}

namespace {

constexpr const char* kEmbPrefix = "embeddings.";

// "embeddings.3.weight" -> 3; -1 for a dense parameter.
int table_of(const std::string& name) {
  if (name.rfind(kEmbPrefix, 0) != 0) return -1;
  return std::stoi(name.substr(std::string(kEmbPrefix).size()));
}

std::string table_group(int64_t t) { return "/embeddings/" + std::to_string(t); }

Tensor to_fp16(const Tensor& t) {
  Tensor h = Tensor::empty(t.shape(), DType::kF16);
  const float* s = t.data<float>();
  f16* d = h.data<f16>();
  for (int64_t i = 0; i < t.numel(); ++i) d[i] = to_f16(s[i]);
  return h;
}

std::string shape_text(const Shape& s) {
  std::string out = "[";
  for (size_t i = 0; i < s.size(); ++i) out += (i ? ", " : "") + std::to_string(s[i]);
  return out + "]";
}

}  // namespace

void write_export(const std::string& path, Model& model, const data::ColumnSchema& schema, Quantize q) {
  const ModelConfig& c = model.config();
  schema.validate();
  RF_CHECK(schema.num_sparse() == static_cast<int>(c.table_sizes.size()) && schema.num_dense() == c.num_dense,
           "write_export: the data schema (", schema.num_dense(), " dense, ", schema.num_sparse(),
           " sparse) does not match the model (", c.num_dense, " dense, ", c.table_sizes.size(), " tables)");
  H5Writer w(path);
  w.attr("/", "format", kExportFormat);
  w.attr("/", "schema_version", kExportSchemaVersion);
  w.attr("/", "producer", "recforge");
  w.attr("/", "model_type", c.type);
  w.attr("/", "num_dense", c.num_dense);
  w.attr("/", "num_tables", static_cast<int64_t>(c.table_sizes.size()));
  w.attr("/", "table_sizes", c.table_sizes);
  w.attr("/", "embedding_dim", c.embedding_dim);
  w.attr("/", "bottom_mlp", c.bottom_mlp);
  w.attr("/", "top_mlp", c.top_mlp);
  w.attr("/", "self_interaction", static_cast<int64_t>(c.self_interaction));
  w.attr("/", "cross_layers", c.cross_layers);
  w.attr("/", "cross_rank", c.cross_rank);
  w.attr("/", "pooling", c.pooling == PoolMode::kSum ? "sum" : "mean");
  w.attr("/", "seed", static_cast<int64_t>(c.seed));
  w.attr("/", "embedding_storage", storage_name(q));

  w.group("/feature_pipeline");
  const std::string fp = "/feature_pipeline";
  std::vector<std::string> kinds, names;
  for (const data::Column& col : schema.columns) {
    kinds.emplace_back(data::column_kind_name(col.kind));
    names.push_back(col.name);
  }
  std::vector<int64_t> buckets;
  for (int f = 0; f < schema.num_sparse(); ++f) buckets.push_back(schema.buckets(f));
  const bool hex = schema.encoding == data::TokenEncoding::kHex;
  w.attr(fp, "column_kinds", kinds);
  w.attr(fp, "column_names", names);
  w.attr(fp, "num_dense", static_cast<int64_t>(schema.num_dense()));
  w.attr(fp, "num_sparse", static_cast<int64_t>(schema.num_sparse()));
  w.attr(fp, "dense_transform", kDenseTransform);
  w.attr(fp, "token_encoding", hex ? "hex" : "string");
  w.attr(fp, "max_hex_digits", static_cast<int64_t>(schema.max_hex_digits));
  w.attr(fp, "hash_function", hex ? "splitmix64" : "fnv1a64");
  w.attr(fp, "hash_buckets", buckets);
  w.attr(fp, "reserved_index", int64_t{0});
  w.attr(fp, "multi_hot_separator", std::string(1, schema.multi_hot_separator));

  w.group("/dense");
  w.group("/embeddings");
  const std::vector<std::string> sparse_names = schema.sparse_names();
  for (Parameter* p : model.parameters()) {
    int t = table_of(p->name);
    if (t < 0) {
      w.dataset("/dense/" + p->name, p->value);
      continue;
    }
    const std::string g = table_group(t);
    w.group(g);
    w.attr(g, "feature", sparse_names.at(static_cast<size_t>(t)));
    w.attr(g, "parameter", p->name);
    const Tensor table = p->value.on(Device::cpu());  // GPU-trained
    switch (q) {
      case Quantize::kNone: w.dataset(g + "/weight", table); break;
      case Quantize::kFp16: w.dataset(g + "/weight", to_fp16(table)); break;
      case Quantize::kInt8: {
        RowwiseInt8 r = quantize_rowwise_int8(table);
        w.dataset_u8(g + "/weight_q", r.q, table.shape());
        w.dataset(g + "/scale", r.scale);
        w.dataset(g + "/bias", r.bias);
        break;
      }
    }
  }
  w.commit();
}

namespace {

data::ColumnSchema read_pipeline(const H5Reader& r) {
  const std::string fp = "/feature_pipeline";
  const std::string& path = r.path();
  if (!r.exists(fp)) throw DataError(path + ": group '/feature_pipeline' not found");
  data::ColumnSchema s;
  std::vector<std::string> kinds = r.attr_strings(fp, "column_kinds");
  std::vector<std::string> names = r.attr_strings(fp, "column_names");
  if (names.size() != kinds.size())
    throw DataError(path + ": /feature_pipeline: column_names has " + std::to_string(names.size()) +
                    " entries, column_kinds " + std::to_string(kinds.size()));
  for (size_t i = 0; i < kinds.size(); ++i) {
    data::Column col;
    col.name = names[i];
    const std::string& k = kinds[i];
    if (k == "label") col.kind = data::ColumnKind::kLabel;
    else if (k == "dense") col.kind = data::ColumnKind::kDense;
    else if (k == "cat") col.kind = data::ColumnKind::kCategorical;
    else if (k == "multi") col.kind = data::ColumnKind::kMultiHot;
    else if (k == "ignore") col.kind = data::ColumnKind::kIgnore;
    else throw DataError(path + ": /feature_pipeline: column_kinds[" + std::to_string(i) + "] = '" + k +
                         "' (expected label, dense, cat, multi or ignore)");
    s.columns.push_back(col);
  }
  auto expect = [&](const std::string& key, const std::string& got, const std::string& want) {
    if (got != want)
      throw DataError(path + ": /feature_pipeline: " + key + " = '" + got + "', this build supports '" + want + "'");
  };
  expect("dense_transform", r.attr_string(fp, "dense_transform"), kDenseTransform);
  std::string enc = r.attr_string(fp, "token_encoding");
  if (enc == "hex") {
    s.encoding = data::TokenEncoding::kHex;
    expect("hash_function", r.attr_string(fp, "hash_function"), "splitmix64");
  } else if (enc == "string") {
    s.encoding = data::TokenEncoding::kString;
    expect("hash_function", r.attr_string(fp, "hash_function"), "fnv1a64");
  } else {
    throw DataError(path + ": /feature_pipeline: token_encoding = '" + enc + "' (expected hex or string)");
  }
  s.max_hex_digits = static_cast<int>(r.attr_int(fp, "max_hex_digits"));
  s.hash_buckets = r.attr_ints(fp, "hash_buckets");
  if (r.attr_int(fp, "reserved_index") != 0)
    throw DataError(path + ": /feature_pipeline: reserved_index must be 0");
  std::string sep = r.attr_string(fp, "multi_hot_separator");
  if (sep.size() != 1) throw DataError(path + ": /feature_pipeline: multi_hot_separator must be one character");
  s.multi_hot_separator = sep[0];
  try {
    s.validate();
  } catch (const ConfigError& e) {
    throw DataError(path + ": /feature_pipeline: " + e.what());
  }
  if (s.hash_buckets.size() != static_cast<size_t>(s.num_sparse()))
    throw DataError(path + ": /feature_pipeline: hash_buckets has " + std::to_string(s.hash_buckets.size()) +
                    " values for " + std::to_string(s.num_sparse()) + " sparse features");
  return s;
}

// Reads table t into `value` ([rows, dim] fp32), whatever its storage.
void read_table(const H5Reader& r, const std::string& storage, int64_t t, Tensor& value) {
  const std::string g = table_group(t);
  const Shape want = value.shape();
  auto check_shape = [&](const std::string& name, const Shape& got, const Shape& expected) {
    if (got != expected)
      throw DataError(r.path() + ": dataset '" + name + "': expected shape " + shape_text(expected) + ", got " +
                      shape_text(got) + " (from table_sizes and embedding_dim)");
  };
  if (storage == "fp32" || storage == "fp16") {
    const std::string name = g + "/weight";
    H5DatasetInfo inf = r.info(name);
    check_shape(name, inf.shape, want);
    size_t bytes = storage == "fp32" ? 4 : 2;
    if (inf.type_class != H5T_FLOAT || inf.type_size != bytes)
      throw DataError(r.path() + ": dataset '" + name + "': expected " + storage + " (embedding_storage)");
    value.copy_from(r.read_f32(name));
    return;
  }
  RowwiseInt8 q;
  const std::string qn = g + "/weight_q", sn = g + "/scale", bn = g + "/bias";
  check_shape(qn, r.info(qn).shape, want);
  check_shape(sn, r.info(sn).shape, {want[0]});
  check_shape(bn, r.info(bn).shape, {want[0]});
  q.q = r.read_u8(qn);
  q.scale = r.read_f32(sn);
  q.bias = r.read_f32(bn);
  value.copy_from(dequantize_rowwise_int8(q, want[0], want[1]));
}

}  // namespace

LoadedExport load_export(const std::string& path, Device device) {
  H5Reader r(path);
  LoadedExport out;
  out.path = path;
  if (!r.has_attr("/", "format")) throw DataError(path + ": not a recforge export (no root attribute 'format')");
  std::string format = r.attr_string("/", "format");
  if (format != kExportFormat)
    throw DataError(path + ": not a recforge export (format = '" + format + "', expected '" + kExportFormat + "')");
  int64_t version = r.attr_int("/", "schema_version");
  if (version != kExportSchemaVersion)
    throw DataError(path + ": schema_version " + std::to_string(version) + " is not supported (this build reads " +
                    std::to_string(kExportSchemaVersion) + ")");

  ModelConfig& c = out.config;
  c.type = r.attr_string("/", "model_type");
  c.num_dense = r.attr_int("/", "num_dense");
  c.table_sizes = r.attr_ints("/", "table_sizes");
  c.embedding_dim = r.attr_int("/", "embedding_dim");
  c.bottom_mlp = r.attr_ints("/", "bottom_mlp");
  c.top_mlp = r.attr_ints("/", "top_mlp");
  c.self_interaction = r.attr_int("/", "self_interaction") != 0;
  c.cross_layers = r.attr_int("/", "cross_layers");
  c.cross_rank = r.attr_int("/", "cross_rank");
  std::string pooling = r.attr_string("/", "pooling");
  if (pooling != "sum" && pooling != "mean") throw DataError(path + ": pooling = '" + pooling + "' (expected sum or mean)");
  c.pooling = pooling == "sum" ? PoolMode::kSum : PoolMode::kMean;
  c.seed = static_cast<uint64_t>(r.attr_int("/", "seed"));
  if (r.attr_int("/", "num_tables") != static_cast<int64_t>(c.table_sizes.size()))
    throw DataError(path + ": num_tables = " + std::to_string(r.attr_int("/", "num_tables")) + " but table_sizes has " +
                    std::to_string(c.table_sizes.size()) + " values");
  out.storage = r.attr_string("/", "embedding_storage");
  if (out.storage != "fp32" && out.storage != "fp16" && out.storage != "int8_rowwise")
    throw DataError(path + ": embedding_storage = '" + out.storage + "' (expected fp32, fp16 or int8_rowwise)");

  out.schema = read_pipeline(r);
  if (out.schema.num_dense() != c.num_dense || out.schema.num_sparse() != static_cast<int>(c.table_sizes.size()))
    throw DataError(path + ": /feature_pipeline has " + std::to_string(out.schema.num_dense()) + " dense and " +
                    std::to_string(out.schema.num_sparse()) + " sparse columns; the model expects " +
                    std::to_string(c.num_dense) + " and " + std::to_string(c.table_sizes.size()));
  for (int f = 0; f < out.schema.num_sparse(); ++f)
    if (out.schema.buckets(f) > c.table_sizes[static_cast<size_t>(f)])
      throw DataError(path + ": /feature_pipeline: hash_buckets[" + std::to_string(f) + "] = " +
                      std::to_string(out.schema.buckets(f)) + " exceeds table_sizes[" + std::to_string(f) + "] = " +
                      std::to_string(c.table_sizes[static_cast<size_t>(f)]));

  try {
    out.model = make_model(c);
  } catch (const ConfigError& e) {
    throw DataError(path + ": the stored hyper-parameters do not make a model: " + e.what());
  }
  // Read everything into the model's own parameters; checking each shape before it is read.
  for (Parameter* p : out.model->parameters()) {
    int t = table_of(p->name);
    if (t >= 0) {
      read_table(r, out.storage, t, p->value);
      continue;
    }
    const std::string name = "/dense/" + p->name;
    H5DatasetInfo inf = r.info(name);
    if (inf.shape != p->value.shape())
      throw DataError(path + ": dataset '" + name + "': expected shape " + shape_text(p->value.shape()) + ", got " +
                      shape_text(inf.shape) + " (from the model hyper-parameters)");
    p->value.copy_from(r.read_f32(name));
  }
  if (device.is_cuda()) {
    // The file is read into host parameters; a GPU predictor gets the same model built on the device
    // and the weights copied over.
    ModelConfig on_device = c;
    on_device.device = device;
    std::unique_ptr<Model> gpu = make_model(on_device);
    ParameterList host = out.model->parameters(), dev = gpu->parameters();
    for (size_t i = 0; i < host.size(); ++i) dev[i]->value.copy_from(host[i]->value);
    out.model = std::move(gpu);
    out.config = on_device;
  }
  return out;
}

}  // namespace rf::serve
