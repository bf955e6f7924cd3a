// Encodes a config's train and test data, the model's initial weights and the training
// hyper-parameters into one data.h5 for bench/ml100k_pytorch.py, so that PyTorch trains from exactly
// what `recforge train --config` starts from: the same parsed rows, the same weights, the same optimizers.
//
//   encode_dataset --config configs/dlrm_ml100k.ini [--section.key=value ...] --out data.h5
//
// Layout (read by ml100k_pytorch.py / recforge_ref.load_split): train/ and test/ each hold labels [N] f32,
// dense [N, num_dense] f32 (already log-transformed), indices_t [nnz_t] i64 and offsets_t [N + 1] i64 per
// sparse feature t; params/<name> the initial weights; root attributes the model config (as
// recforge_ref.config_to_attrs writes it) and batch_size, epochs, lr, sparse_lr, dense_optimizer,
// sparse_optimizer, eps, adagrad_eps, adagrad_init, beta1, beta2, weight_decay.
#include <cstdio>
#include <exception>
#include <string>
#include <vector>

#include "dataloader/tsv_reader.h"
#include "src/config/config.h"
#include "src/io/tensor_file.h"
#include "src/model/model.h"
#include "src/train/data_source.h"

namespace rf {
namespace {

void add_split(NamedTensors& out, const std::string& group, const data::Batch& b) {
  out.emplace_back(group + "/labels", b.labels);
  out.emplace_back(group + "/dense", b.dense);
  for (int t = 0; t < b.num_sparse(); ++t) {
    out.emplace_back(group + "/indices_" + std::to_string(t), b.indices[static_cast<size_t>(t)]);
    out.emplace_back(group + "/offsets_" + std::to_string(t), b.offsets[static_cast<size_t>(t)]);
  }
}

int run(const std::string& config_path, const std::vector<std::string>& overrides, const std::string& out_path) {
  Config cfg = Config::load(config_path, overrides);
  // The PyTorch script trains whole epochs at a constant lr; refuse what it cannot reproduce.
  if (cfg.get_int("train.steps") > 0 || cfg.get_int("optimizer.warmup_steps") > 0 ||
      cfg.get_string("optimizer.decay") != "none" || cfg.get_string("train.precision") != "fp32")
    throw ConfigError("encode_dataset: ml100k_pytorch.py reproduces only fp32 training over whole epochs at a "
                      "constant lr (train.steps = 0, optimizer.warmup_steps = 0, optimizer.decay = none)");

  const std::string& train_path = cfg.get_string("data.train");
  const std::string& test_path = cfg.get_string("data.test");
  require_file("train", train_path);
  require_file("test", test_path);
  data::ColumnSchema schema = schema_from(cfg);
  data::ReaderOptions ropts = reader_options_from(cfg);
  // Read as Trainer::run reads them (the test split honours max_rows only with skip_bad_rows).
  std::string summary;
  data::Batch train = data::load_all(schema, {train_path}, ropts, &summary);
  if (!summary.empty()) std::fprintf(stderr, "%s: %s\n", train_path.c_str(), summary.c_str());
  data::Batch test = data::load_all(schema, {test_path}, ropts.skip_bad_rows ? ropts : data::ReaderOptions{}, &summary);
  if (!summary.empty()) std::fprintf(stderr, "%s: %s\n", test_path.c_str(), summary.c_str());

  ModelConfig mc = model_config_from(cfg, schema.num_dense(), table_sizes_from(schema));
  std::unique_ptr<Model> model = make_model(mc);
  ParameterList params = model->parameters();
  const std::string& init = cfg.get_string("model.init");
  if (!init.empty()) load_parameters(init, params);

  NamedTensors out;
  add_split(out, "train", train);
  add_split(out, "test", test);
  for (const Parameter* p : params) out.emplace_back("params/" + p->name, p->value);

  // Optimizer hyper-parameters exactly as the trainer derives them (trainer.cc, hyperparams_from):
  // Adagrad (dense) and row-wise Adagrad take optimizer.adagrad_eps, Adam/AdamW optimizer.eps.
  const std::string& dense_opt = cfg.get_string("optimizer.dense");
  double lr = cfg.get_float("optimizer.lr");
  double sparse_lr = cfg.get_float("optimizer.sparse_lr");

  FileAttrs attrs;
  attrs.strings = {{"model_type", mc.type},
                   {"pooling", mc.pooling == PoolMode::kSum ? "sum" : "mean"},
                   {"dense_optimizer", dense_opt},
                   {"sparse_optimizer", cfg.get_string("optimizer.sparse")},
                   {"config", config_path}};
  attrs.ints = {{"embedding_dim", mc.embedding_dim},
                {"num_dense", mc.num_dense},
                {"self_interaction", mc.self_interaction ? 1 : 0},
                {"cross_layers", mc.type == "dcnv2" ? mc.cross_layers : 0},
                {"cross_rank", mc.type == "dcnv2" ? mc.cross_rank : 0},
                {"batch_size", cfg.get_int("train.batch_size")},
                {"epochs", cfg.get_int("train.epochs")},
                {"seed", static_cast<int64_t>(mc.seed)}};
  attrs.int_lists = {{"bottom_mlp", mc.bottom_mlp}, {"top_mlp", mc.top_mlp}, {"table_sizes", mc.table_sizes}};
  attrs.floats = {{"lr", lr},
                  {"sparse_lr", sparse_lr > 0 ? sparse_lr : lr},
                  {"eps", cfg.get_float("optimizer.eps")},
                  {"adagrad_eps", cfg.get_float("optimizer.adagrad_eps")},
                  {"adagrad_init", cfg.get_float("optimizer.adagrad_init")},
                  {"beta1", cfg.get_float("optimizer.beta1")},
                  {"beta2", cfg.get_float("optimizer.beta2")},
                  {"weight_decay", cfg.get_float("optimizer.weight_decay")}};
  write_tensors_with_attrs(out_path, out, attrs);
  std::printf("wrote %s: %s, %lld train / %lld test rows, %d sparse features, %lld parameters\n", out_path.c_str(),
              mc.type.c_str(), static_cast<long long>(train.size()), static_cast<long long>(test.size()),
              train.num_sparse(), static_cast<long long>(parameter_count(params)));
  return 0;
}

}  // namespace
}  // namespace rf

int main(int argc, char** argv) {
  std::string config, out;
  std::vector<std::string> overrides;
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    if ((a == "--config" || a == "--out") && i + 1 < argc) {
      (a == "--config" ? config : out) = argv[++i];
    } else if (a.rfind("--config=", 0) == 0) {
      config = a.substr(9);
    } else if (a.rfind("--out=", 0) == 0) {
      out = a.substr(6);
    } else if (a.rfind("--", 0) == 0) {
      overrides.push_back(a);
    } else {
      overrides.push_back(a);  // the value of "--section.key value"
    }
  }
  if (config.empty() || out.empty()) {
    std::fprintf(stderr, "usage: %s --config FILE [--section.key=value ...] --out data.h5\n", argv[0]);
    return 2;
  }
  try {
    return rf::run(config, overrides, out);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "encode_dataset: %s\n", e.what());
    return 1;
  }
}
