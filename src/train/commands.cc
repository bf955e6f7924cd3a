// `recforge train`, `recforge eval` and `recforge synth`: thin handlers over Trainer and the
// synthetic-data generator.
#include <cstdio>
#include <filesystem>

#include "dataloader/synth.h"
#include "src/cli/commands.h"
#include "src/core/log.h"
#include "src/train/data_source.h"
#include "src/train/trainer.h"

namespace rf::cli {

int run_train(const Config& cfg) {
  Trainer trainer(cfg);
  trainer.run();
  return 0;
}

int run_eval(const Config& cfg) {
  if (cfg.get_string("model.init").empty())
    throw ConfigError("[model] init: recforge eval needs the parameter file to evaluate (e.g. runs/latest/params.h5)");
  const std::string& test_path = cfg.get_string("data.test");
  require_file("test", test_path);
  Trainer trainer(cfg);
  data::Batch test = data::load_all(schema_from(cfg), {test_path}, reader_options_from(cfg));
  EvalResult r = trainer.evaluate(test);
  std::printf("test auc=%.5f logloss=%.5f rows=%lld\n", r.auc, r.logloss, static_cast<long long>(r.rows));
  return 0;
}

int run_synth(const Config& cfg) {
  if (cfg.get_string("data.format") != "criteo")
    throw ConfigError("[data] format: recforge synth writes the criteo layout; set data.format=criteo");
  const std::string& train = cfg.get_string("data.train");
  const std::string& test = cfg.get_string("data.test");
  if (train.empty() || test.empty()) throw ConfigError("[data] train and test: synth needs both output paths");
  for (const std::string& p : {train, test}) {
    std::filesystem::path dir = std::filesystem::path(p).parent_path();
    if (!dir.empty()) std::filesystem::create_directories(dir);
  }
  data::SynthSpec spec;
  spec.rows_train = cfg.get_int("synth.rows_train");
  spec.rows_test = cfg.get_int("synth.rows_test");
  spec.seed = static_cast<uint64_t>(cfg.get_int("synth.seed"));
  spec.min_cardinality = cfg.get_int("synth.min_cardinality");
  spec.max_cardinality = cfg.get_int("synth.max_cardinality");
  spec.zipf_exponent = cfg.get_float("synth.zipf_exponent");
  spec.logit_std = cfg.get_float("synth.logit_std");
  if (spec.min_cardinality > spec.max_cardinality)
    throw ConfigError("[synth] min_cardinality: " + std::to_string(spec.min_cardinality) + " is above max_cardinality " +
                      std::to_string(spec.max_cardinality));
  data::SynthResult r = data::synth_write(spec, train, test);
  std::printf("synth: wrote %lld train rows to %s and %lld test rows to %s\n", static_cast<long long>(r.rows_train),
              train.c_str(), static_cast<long long>(r.rows_test), test.c_str());
  std::printf("synth: positive rate train %.4f test %.4f\n", r.positive_rate_train, r.positive_rate_test);
  std::printf("planted auc=%.5f (the planted model's own AUC on the test split: the attainable ceiling)\n",
              r.planted_auc_test);
  return 0;
}

}  // namespace rf::cli
