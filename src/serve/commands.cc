// `recforge export` and `recforge predict`: the command-line side of the serving export. Export loads
// trained parameters into the configured model and writes the HDF5 export (optionally quantised, with
// the AUC change measured on data.test) or the ONNX graph; predict scores a TSV file with an export.
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>

#include "src/checkpoint/checkpoint.h"
#include "src/cli/commands.h"
#include "src/core/allocator.h"
#include "src/core/error.h"
#include "src/core/log.h"
#include "src/io/tensor_file.h"
#include "src/metrics/binary_metrics.h"
#include "src/serve/export.h"
#include "src/serve/onnx_export.h"
#include "src/serve/predictor.h"
#include "src/train/data_source.h"

namespace rf::cli {
namespace {

// export.checkpoint: a params .h5 file, a checkpoint directory (verified, then its model.h5), or a
// directory holding params.h5 (a training out_dir); empty = train.out_dir.
std::string params_path_from(const Config& cfg) {
  std::string p = cfg.get_string("export.checkpoint");
  if (p.empty()) p = cfg.get_string("train.out_dir");
  std::error_code ec;
  if (std::filesystem::is_directory(p, ec)) {
    std::filesystem::path dir(p);
    if (std::filesystem::exists(dir / "manifest.txt")) {  // a checkpoint: verified, then its full weights
      verify_checkpoint(dir.string());
      p = (dir / "model.h5").string();
    } else {
      p = (dir / "params.h5").string();
    }
  }
  if (!std::filesystem::exists(p, ec))
    throw DataError("[export] checkpoint: '" + p + "' not found (give a params .h5 file or a directory holding params.h5)");
  return p;
}

// Exact AUC of the model's logits over `data`, in batches.
double auc_of(Model& model, const data::Batch& all, int64_t batch_size) {
  BinaryMetrics m;
  Tensor logits;
  for (int64_t b = 0; b < all.size(); b += batch_size) {
    int64_t e = std::min(all.size(), b + batch_size);
    data::Batch part = (b == 0 && e == all.size()) ? all : data::slice_batch(all, b, e);
    if (logits.shape() != Shape{e - b}) logits = Tensor::empty({e - b}, DType::kF32);
    model.forward(model_input(part), logits);
    m.add(logits.data<float>(), part.labels.data<float>(), static_cast<size_t>(e - b));
  }
  return m.auc();
}

}  // namespace

int run_export(const Config& cfg) {
  const std::string params = params_path_from(cfg);
  const std::string format = cfg.get_string("export.format");
  const serve::Quantize q = serve::parse_quantize(cfg.get_string("export.quantize"));
  std::string out = cfg.get_string("export.out");
  if (out.empty()) out = cfg.get_string("train.out_dir") + (format == "onnx" ? "/model.onnx" : "/model.h5");

  data::ColumnSchema schema = schema_from(cfg);
  std::unique_ptr<Model> model = make_model(model_config_from(cfg, schema.num_dense(), table_sizes_from(schema)));
  load_parameters(params, model->parameters());

  // With quantisation, measure what it costs on data.test: the fp32 model against the exported one.
  const std::string& test_path = cfg.get_string("data.test");
  const bool measure = q != serve::Quantize::kNone && !test_path.empty();
  data::Batch test;
  double auc_fp32 = NAN;
  const int64_t eval_batch = cfg.get_int("train.eval_batch_size");
  if (measure) {
    require_file("test", test_path);
    test = data::load_all(schema, {test_path}, reader_options_from(cfg));
    auc_fp32 = auc_of(*model, test, eval_batch);
  } else if (q != serve::Quantize::kNone) {
    log_warn("export: data.test is not set; the AUC change of quantize=", serve::quantize_name(q), " is not measured");
  }

  double auc_q = NAN;
  if (format == "hdf5") {
    serve::write_export(out, *model, schema, q);
    if (measure) auc_q = auc_of(*serve::load_export(out).model, test, eval_batch);  // the file as a server reads it
  } else {
    // ONNX holds fp32 initializers: a quantised export stores the dequantised tables, so it scores
    // exactly as the quantised HDF5 export does.
    if (q != serve::Quantize::kNone)
      for (Parameter* p : model->parameters())
        if (p->name.rfind("embeddings.", 0) == 0) p->value.copy_from(serve::round_trip(p->value, q));
    serve::write_onnx(out, *model, schema);
    if (measure) auc_q = auc_of(*model, test, eval_batch);
  }
  std::printf("export: wrote %s (%s, embeddings %s) from %s\n", out.c_str(), format.c_str(), serve::storage_name(q),
              params.c_str());
  if (measure)
    std::printf("export: quantize=%s test auc fp32=%.6f quantized=%.6f change=%+.6f (%lld rows)\n",
                serve::quantize_name(q), auc_fp32, auc_q, auc_q - auc_fp32, static_cast<long long>(test.size()));
  return 0;
}

int run_predict(const Config& cfg) {
  const std::string& model_path = cfg.get_string("predict.model");
  const std::string& input = cfg.get_string("predict.input");
  const std::string& out = cfg.get_string("predict.out");
  if (model_path.empty()) throw ConfigError("[predict] model: no export file given (--predict.model=model.h5)");
  if (input.empty()) throw ConfigError("[predict] input: no rows given (--predict.input=rows.tsv)");
  if (out.empty()) throw ConfigError("[predict] out: no output file given (--predict.out=scores.txt)");
  if (!std::filesystem::exists(input)) throw DataError("[predict] input: file '" + input + "' not found");

  // predict.device: auto scores on the GPU when one is present, else on the CPU.
  const std::string& dev_name = cfg.get_string("predict.device");
  Device device = Device::cpu();
  if (dev_name == "cuda" || (dev_name == "auto" && cuda_available())) device = Device::cuda(0);
  serve::Predictor predictor(model_path, device);
  std::vector<float> labels;
  std::vector<float> scores = predictor.predict_file(input, cfg.get_int("predict.batch_size"), &labels);

  std::filesystem::path dir = std::filesystem::path(out).parent_path();
  if (!dir.empty()) std::filesystem::create_directories(dir);
  const std::string tmp = out + ".tmp";
  {
    std::FILE* f = std::fopen(tmp.c_str(), "w");
    if (!f) throw DataError("[predict] out: cannot write '" + tmp + "'");
    // %.9g round-trips every fp32 value exactly.
    for (float s : scores) std::fprintf(f, "%.9g\n", static_cast<double>(s));
    if (std::fclose(f) != 0) throw BackendError("[predict] out: write to '" + tmp + "' failed");
  }
  std::filesystem::rename(tmp, out);
  std::fprintf(stderr, "predict: scored %zu rows of %s with %s", scores.size(), input.c_str(), model_path.c_str());
  if (!labels.empty()) std::fprintf(stderr, "; auc=%.6f", roc_auc(scores.data(), labels.data(), labels.size()));
  std::fprintf(stderr, "\n");
  return 0;
}

}  // namespace rf::cli
