// ONNX export (see onnx_export.h). The protobuf wire format is tags (field << 3 | wire type) followed by
// varints, fixed 32-bit values or length-delimited bytes; field numbers follow onnx/onnx.proto.
#include "src/serve/onnx_export.h"

#include <cstring>
#include <map>
#include <fstream>
#include <filesystem>

#include "kernels/interaction.h"
#include "src/core/error.h"
#include "src/serve/export.h"

namespace rf::serve {
namespace {

// ---- protobuf encoding ----
class Pb {
 public:
  void varint(uint64_t v) {
    while (v >= 0x80) {
      buf_.push_back(static_cast<char>((v & 0x7f) | 0x80));
      v >>= 7;
    }
    buf_.push_back(static_cast<char>(v));
  }
  void tag(int field, int wire) { varint(static_cast<uint64_t>(field) << 3 | static_cast<uint64_t>(wire)); }
  void i64(int field, int64_t v) {
    tag(field, 0);
    varint(static_cast<uint64_t>(v));
  }
  void f32(int field, float v) {
    tag(field, 5);
    char b[4];
    std::memcpy(b, &v, 4);
    buf_.append(b, 4);
  }
  void bytes(int field, const std::string& s) {
    tag(field, 2);
    varint(s.size());
    buf_ += s;
  }
  void bytes(int field, const void* data, size_t n) {
    tag(field, 2);
    varint(n);
    buf_.append(static_cast<const char*>(data), n);
  }
  void msg(int field, const Pb& m) { bytes(field, m.buf_); }
  const std::string& str() const { return buf_; }

 private:
  std::string buf_;
};

// onnx.proto enums.
constexpr int kFloat = 1, kInt64 = 7;                          // TensorProto.DataType
constexpr int kAttrFloat = 1, kAttrInt = 2, kAttrInts = 7;     // AttributeProto.AttributeType

struct Attr {
  std::string name;
  int type;
  int64_t i = 0;
  float f = 0;
  std::vector<int64_t> ints;
};
Attr attr_i(const std::string& n, int64_t v) { return {n, kAttrInt, v, 0, {}}; }
Attr attr_ints(const std::string& n, std::vector<int64_t> v) { return {n, kAttrInts, 0, 0, std::move(v)}; }

class GraphBuilder {
 public:
  // Adds a node; returns its (single) output name.
  std::string node(const std::string& op, const std::vector<std::string>& inputs, const std::vector<Attr>& attrs = {},
                   const std::string& out_name = "") {
    std::string out = out_name.empty() ? op + "_" + std::to_string(counter_++) : out_name;
    Pb n;
    for (const std::string& i : inputs) n.bytes(1, i);
    n.bytes(2, out);
    n.bytes(3, "n" + std::to_string(nodes_count_++) + "_" + op);
    n.bytes(4, op);
    for (const Attr& a : attrs) {
      Pb ap;
      ap.bytes(1, a.name);
      if (a.type == kAttrFloat) ap.f32(2, a.f);
      if (a.type == kAttrInt) ap.i64(3, a.i);
      if (a.type == kAttrInts)
        for (int64_t v : a.ints) ap.i64(8, v);
      ap.i64(20, a.type);
      n.msg(5, ap);
    }
    graph_.msg(1, n);
    return out;
  }
  std::string init_f32(const std::string& name, const Tensor& t) {
    RF_CHECK(t.dtype() == DType::kF32, "onnx initializer '", name, "' must be fp32");
    Pb tp;
    for (int64_t d : t.shape()) tp.i64(1, d);
    tp.i64(2, kFloat);
    tp.bytes(8, name);
    tp.bytes(9, t.raw(), t.nbytes());  // raw_data is little-endian, as the host
    inits_.msg(5, tp);
    return name;
  }
  std::string init_i64(const std::string& name, const std::vector<int64_t>& v, const Shape& shape) {
    Pb tp;
    for (int64_t d : shape) tp.i64(1, d);
    tp.i64(2, kInt64);
    tp.bytes(8, name);
    tp.bytes(9, v.data(), v.size() * sizeof(int64_t));
    inits_.msg(5, tp);
    return name;
  }
  // dims: a value >= 0 is fixed, -1 is the symbolic batch "B", -2 the bag length "L_<name>".
  void value_info(int field, const std::string& name, int elem, const std::vector<int64_t>& dims) {
    Pb shape;
    for (int64_t d : dims) {
      Pb dim;
      if (d >= 0) dim.i64(1, d);
      else dim.bytes(2, d == -1 ? std::string("B") : "L_" + name);
      shape.msg(1, dim);
    }
    Pb tensor;
    tensor.i64(1, elem);
    tensor.msg(2, shape);
    Pb type;
    type.msg(1, tensor);
    Pb vi;
    vi.bytes(1, name);
    vi.msg(2, type);
    io_.msg(field, vi);
  }
  std::string graph_bytes(const std::string& name) const {
    Pb g;
    std::string out = graph_.str();
    Pb tail;
    tail.bytes(2, name);
    return out + tail.str() + inits_.str() + io_.str();
  }

 private:
  Pb graph_, inits_, io_;
  int counter_ = 0, nodes_count_ = 0;
};

}  // namespace

void write_onnx(const std::string& path, Model& model, const data::ColumnSchema& schema) {
  const ModelConfig& c = model.config();
  const int64_t T = static_cast<int64_t>(c.table_sizes.size()), d = c.embedding_dim;
  RF_CHECK(schema.num_sparse() == T && schema.num_dense() == c.num_dense, "write_onnx: schema does not match model");
  std::map<std::string, Tensor> params;
  for (Parameter* p : model.parameters()) params[p->name] = p->value;
  GraphBuilder g;

  auto mlp = [&](const std::string& prefix, std::string x, size_t layers, bool relu_last) {
    for (size_t i = 0; i < layers; ++i) {
      std::string base = prefix + "." + std::to_string(i);
      std::string w = g.init_f32(base + ".weight", params.at(base + ".weight"));
      std::string b = g.init_f32(base + ".bias", params.at(base + ".bias"));
      x = g.node("Gemm", {x, w, b}, {attr_i("transB", 1)});
      if (i + 1 < layers || relu_last) x = g.node("Relu", {x});
    }
    return x;
  };

  g.value_info(11, "dense", kFloat, {-1, c.num_dense});
  std::string bottom = mlp("bottom_mlp", "dense", c.bottom_mlp.size(), true);  // [B, d]

  const std::vector<bool> multi = schema.sparse_is_multi_hot();
  std::string axes1_name;  // created on first use: an unused initializer draws an onnxruntime warning
  auto axes1 = [&]() -> const std::string& {
    if (axes1_name.empty()) axes1_name = g.init_i64("axes_1", {1}, {1});
    return axes1_name;
  };
  std::string axes2;  // only multi-hot bags need it; an unused initializer draws an onnxruntime warning
  std::vector<std::string> pooled;  // each [B, d]
  for (int64_t t = 0; t < T; ++t) {
    std::string name = "embeddings." + std::to_string(t) + ".weight";
    std::string table = g.init_f32(name, params.at(name));
    std::string idx = "sparse_" + std::to_string(t);
    if (!multi[static_cast<size_t>(t)]) {
      g.value_info(11, idx, kInt64, {-1});
      pooled.push_back(g.node("Gather", {table, idx}, {attr_i("axis", 0)}));
      continue;
    }
    std::string mask = idx + "_mask";
    if (axes2.empty()) axes2 = g.init_i64("axes_2", {2}, {1});
    g.value_info(11, idx, kInt64, {-1, -2});
    g.value_info(11, mask, kFloat, {-1, -2});
    std::string rows = g.node("Gather", {table, idx}, {attr_i("axis", 0)});  // [B, L, d]
    std::string m3 = g.node("Unsqueeze", {mask, axes2});                      // [B, L, 1]
    std::string sum = g.node("ReduceSum", {g.node("Mul", {rows, m3}), axes1()}, {attr_i("keepdims", 0)});
    if (c.pooling == PoolMode::kMean)
      sum = g.node("Div", {sum, g.node("ReduceSum", {mask, axes1()}, {attr_i("keepdims", 1)})});
    pooled.push_back(sum);
  }

  std::string top_in;
  if (c.type == "dlrm") {
    // Z = [bottom, emb_0..emb_{T-1}] as [B, F, d]; the pair (i, j) is entry i * F + j of Z Z^T.
    const int64_t F = T + 1;
    std::vector<std::string> z_parts{g.node("Unsqueeze", {bottom, axes1()})};
    for (const std::string& p : pooled) z_parts.push_back(g.node("Unsqueeze", {p, axes1()}));
    std::string z = g.node("Concat", z_parts, {attr_i("axis", 1)});
    std::string zt = g.node("Transpose", {z}, {attr_ints("perm", {0, 2, 1})});
    std::string zz = g.node("MatMul", {z, zt});
    std::string flat = g.node("Reshape", {zz, g.init_i64("flat_shape", {-1, F * F}, {2})});
    std::vector<int64_t> pairs;
    for (int64_t i = 0; i < F; ++i)
      for (int64_t j = 0; j < (c.self_interaction ? i + 1 : i); ++j) pairs.push_back(i * F + j);
    RF_CHECK(d + static_cast<int64_t>(pairs.size()) == interaction_output_dim(T, d, c.self_interaction),
             "onnx interaction width");
    std::string pv = g.node("Gather", {flat, g.init_i64("pair_index", pairs, {static_cast<int64_t>(pairs.size())})},
                            {attr_i("axis", 1)});
    top_in = g.node("Concat", {bottom, pv}, {attr_i("axis", 1)});
  } else {
    std::vector<std::string> parts{bottom};
    parts.insert(parts.end(), pooled.begin(), pooled.end());
    std::string x0 = g.node("Concat", parts, {attr_i("axis", 1)});  // [B, d (T + 1)]
    std::string x = x0;
    for (int64_t l = 0; l < c.cross_layers; ++l) {
      std::string pre = "cross." + std::to_string(l) + ".";
      std::string b = g.init_f32(pre + "bias", params.at(pre + "bias"));
      std::string h;
      if (c.cross_rank > 0) {
        std::string vx = g.node("Gemm", {x, g.init_f32(pre + "v", params.at(pre + "v"))}, {attr_i("transB", 1)});
        h = g.node("Gemm", {vx, g.init_f32(pre + "u", params.at(pre + "u")), b}, {attr_i("transB", 1)});
      } else {
        h = g.node("Gemm", {x, g.init_f32(pre + "weight", params.at(pre + "weight")), b}, {attr_i("transB", 1)});
      }
      x = g.node("Add", {g.node("Mul", {x0, h}), x});
    }
    top_in = x;
  }
  std::string top = mlp("top_mlp", top_in, c.top_mlp.size(), false);  // [B, 1]
  g.node("Identity", {top}, {}, "logit");
  g.node("Sigmoid", {"logit"}, {}, "probability");
  g.value_info(12, "logit", kFloat, {-1, 1});
  g.value_info(12, "probability", kFloat, {-1, 1});

  Pb m;
  m.i64(1, 7);  // ir_version 7 (ONNX 1.8, the first with opset 13)
  m.bytes(2, "recforge");
  m.bytes(3, "1");
  m.bytes(7, g.graph_bytes("recforge_" + c.type));
  Pb opset;
  opset.bytes(1, "");
  opset.i64(2, 13);
  m.msg(8, opset);
  auto meta = [&](const std::string& k, const std::string& v) {
    Pb e;
    e.bytes(1, k);
    e.bytes(2, v);
    m.msg(14, e);
  };
  meta("recforge.model_type", c.type);
  meta("recforge.pooling", c.pooling == PoolMode::kSum ? "sum" : "mean");
  meta("recforge.inputs", "dense: log(1+max(x,0)) features; sparse_<t>: hashed rows (see the HDF5 export's /feature_pipeline)");

  std::filesystem::path dir = std::filesystem::path(path).parent_path();
  if (!dir.empty()) std::filesystem::create_directories(dir);
  const std::string tmp = path + ".tmp";
  {
    std::ofstream f(tmp, std::ios::binary | std::ios::trunc);
    if (!f) throw BackendError(tmp + ": cannot create");
    f.write(m.str().data(), static_cast<std::streamsize>(m.str().size()));
    if (!f) throw BackendError(tmp + ": write failed");
  }
  std::error_code ec;
  std::filesystem::rename(tmp, path, ec);
  if (ec) throw BackendError(path + ": cannot rename " + tmp + " into place: " + ec.message());
}

}  // namespace rf::serve
