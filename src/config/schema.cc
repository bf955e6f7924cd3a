// The config schema: every key recforge reads, one row each, plus the typed converters and the
// program_options description built from it. To add a key, add one row to kSchema below (in its
// section's block); the parser, `--help`, `--print-config` and validation all follow from the row.
#include <algorithm>
#include <charconv>
#include <cmath>
#include <sstream>

#include <boost/program_options/value_semantic.hpp>

#include "src/config/config.h"

namespace rf {
namespace {

constexpr double kInf = std::numeric_limits<double>::infinity();

// clang-format off
const std::vector<ConfigKey> kSchema = {
  // name                           spec                               default            help
  // ---- [model] ----
  {"model.type",                    choice_key("dlrm|dcnv2"),          "dlrm",            "model architecture"},
  {"model.embedding_dim",           int_key(1),                        "16",              "width of every embedding vector"},
  {"model.bottom_mlp",              int_list_key(1),                   "512,256,64,16",   "bottom (dense-feature) MLP layer widths; the last must equal embedding_dim for dlrm"},
  {"model.top_mlp",                 int_list_key(1, 1),                "512,256,1",       "top MLP layer widths; the last is the output (1 for a click logit)"},
  {"model.self_interaction",        bool_key(),                        "false",           "dlrm: include each feature's dot product with itself"},
  {"model.cross_layers",            int_key(0),                        "3",               "dcnv2: number of cross layers"},
  {"model.cross_rank",              int_key(0),                        "0",               "dcnv2: rank of the low-rank cross weights (0 = full rank)"},
  {"model.table_sizes",             int_list_key(1),                   "",                "rows per embedding table (empty = from the data: hash_buckets rows per categorical feature)"},
  {"model.pooling",                 choice_key("sum|mean"),            "sum",             "how multi-hot embedding bags are pooled"},
  {"model.seed",                    int_key(0),                        "1234",            "seed for weight initialisation"},
  {"model.init",                    string_key(),                      "",                "HDF5 parameter file to start from instead of the seeded initialisation"},
  // ---- [data] ----
  {"data.format",                   choice_key("criteo|tsv"),          "criteo",          "input format: criteo (label, 13 dense, 26 hex categorical) or tsv (columns from data.schema)"},
  {"data.train",                    string_key(),                      "",                "training data: a tsv file (plain or gzip) or a directory of binary shards from recforge preprocess"},
  {"data.test",                     string_key(),                      "",                "test data file (used by eval and at the end of training)"},
  {"data.validation",               string_key(),                      "",                "validation data file (used every eval_every steps)"},
  {"data.schema",                   string_list_key(),                 "",                "tsv column layout, e.g. label,dense*6,cat*6,multi*1 (empty = criteo layout)"},
  {"data.multi_hot_separator",      string_key(),                      ",",               "separator between the values of one multi-hot field"},
  {"data.hash_buckets",             int_key(1),                        "100000",          "categorical values are hashed modulo this"},
  {"data.skip_bad_rows",            bool_key(),                        "false",           "skip malformed rows with a warning instead of stopping"},
  {"data.max_rows",                 int_key(0),                        "0",               "read at most this many rows per file (0 = all)"},
  {"data.shard_dir",                string_key(),                      "",                "preprocess: output directory of the binary shards (also --out DIR); one sub-directory per split"},
  {"data.shard_rows",               int_key(1),                        "262144",          "preprocess: rows per binary shard file"},
  {"data.block_rows",               int_key(1),                        "1024",            "preprocess: rows per checksum and shuffle block (a shuffled epoch permutes blocks and rows inside each)"},
  {"data.freq_threshold",           int_key(0),                        "0",               "preprocess: categorical values seen fewer times in train map to one index (0 = keep hashed rows)"},
  {"data.shuffle",                  bool_key(),                        "false",           "shards: shuffle block order and rows within blocks every epoch"},
  {"data.shuffle_seed",             int_key(0),                        "0",               "shards: shuffle seed (the epoch is mixed in)"},
  {"data.loader_threads",           int_key(0),                        "2",               "shards: decode workers per rank (0 = decode on the training thread)"},
  {"data.prefetch_depth",           int_key(3),                        "4",               "batch buffers per rank; depth - 2 batches are decoded ahead of the trainer"},
  // ---- [train] ----
  {"train.batch_size",              int_key(1),                        "2048",            "global batch size (split across data-parallel ranks)"},
  {"train.epochs",                  int_key(1),                        "1",               "passes over the training data"},
  {"train.steps",                   int_key(0),                        "0",               "stop after this many steps (0 = epochs decide)"},
  {"train.eval_every",              int_key(0),                        "0",               "evaluate every N steps on data.validation, or data.test without one (0 = never)"},
  {"train.eval_batch_size",         int_key(1),                        "16384",           "batch size for evaluation"},
  {"train.threads",                 int_key(0),                        "0",               "CPU threads per rank (0 = all cores)"},
  {"train.precision",               choice_key("fp32|bf16|fp16"),      "fp32",            "compute dtype; master weights stay fp32"},
  {"train.device",                  string_key(),                      "cpu",             "where the model and the step run: cpu, cuda or cuda:<index>"},
  {"train.fused_embedding_update",  bool_key(),                        "true",            "on one GPU without fp16 loss scaling: update the embedding tables inside the backward (one fused pass) instead of through stored sparse gradients"},
  {"train.bounds_checks",           bool_key(),                        "true",            "on a GPU: check every training batch's embedding offsets and indices before use (a synchronisation in the forward and one in the backward, or a host pass before a CUDA graph replay); the shard loader checks every row against its table when it reads a block and the TSV reader hashes into range, so false skips a redundant check (the CPU ops always check)"},
  {"train.deterministic",           bool_key(),                        "true",            "on a GPU with the fused embedding update: sort each step's lookups and sum every row's gradient in bag order (bit-reproducible); false hashes them by row and adds a row's gradients with float atomics (faster; rows looked up more than once then differ in their last bits from run to run)"},
  {"train.cuda_graph",              bool_key(),                        "false",           "on one GPU with the fused embedding update: capture the step once (after one eager step) into a CUDA graph and replay it for every batch of the same shapes; batches are validated on the host"},
  {"train.metrics_file",            string_key(),                      "",                "append one JSON line of metrics per log step here (empty = out_dir/metrics.jsonl)"},
  {"train.out_dir",                 string_key(),                      "runs/latest",     "directory for metrics, exports and the effective config"},
  // ---- [optimizer] ----
  {"optimizer.dense",               choice_key("sgd|adagrad|adam|adamw"), "sgd",         "optimizer for dense (MLP) parameters"},
  {"optimizer.sparse",              choice_key("sgd|rowwise_adagrad"), "sgd",             "optimizer for embedding tables"},
  {"optimizer.lr",                  positive_float_key(),              "0.1",             "learning rate"},
  {"optimizer.sparse_lr",           float_key(0),                      "0",               "learning rate for embedding tables (0 = same as lr)"},
  {"optimizer.weight_decay",        float_key(0),                      "0",               "L2 weight decay (decoupled for adamw)"},
  {"optimizer.beta1",               float_key_below(0, 1),             "0.9",             "adam/adamw first-moment decay"},
  {"optimizer.beta2",               float_key_below(0, 1),             "0.999",           "adam/adamw second-moment decay"},
  {"optimizer.eps",                 positive_float_key(),              "1e-8",            "adam/adamw denominator epsilon"},
  {"optimizer.adagrad_eps",         positive_float_key(),              "1e-8",            "adagrad denominator epsilon"},
  {"optimizer.adagrad_init",        float_key(0),                      "0",               "initial adagrad accumulator value"},
  {"optimizer.warmup_steps",        int_key(0),                        "0",               "linear learning-rate warmup from 0 over this many steps"},
  {"optimizer.decay",               choice_key("none|linear|poly2|cosine|step"), "none",  "learning-rate decay schedule after warmup"},
  {"optimizer.decay_start",         int_key(0),                        "0",               "step at which decay begins"},
  {"optimizer.decay_steps",         int_key(0),                        "0",               "length of the decay (0 = until the last step)"},
  // ---- [parallel] ----
  {"parallel.backend",              choice_key("auto|mpi|nccl"),       "auto",            "collective backend (auto = nccl for GPU tensors, mpi for CPU)"},
  {"parallel.overlap",              bool_key(),                        "true",            "start each gradient bucket's all-reduce during the backward (false: all after it)"},
  {"parallel.bucket_mb",            int_key(1),                        "25",              "size of a gradient all-reduce bucket in MiB"},
  {"parallel.memory_budget_mb",     int_key(0),                        "0",               "per-device memory for embedding shards when planning (0 = what the device has)"},
  {"parallel.tensor_parallel",      int_key(1),                        "1",               "ranks per tensor-parallel group; the rest of the world is data-parallel"},
  {"parallel.embedding_sharding",   choice_key("auto|replicated|table|row|column"), "replicated", "embedding tables over the data-parallel ranks: replicated (data parallel), whole tables (table), rows (row) or columns (column) per rank, or auto (planner: tables by size within memory_budget_mb, big ones by row)"},
  {"parallel.table_sharding",       string_key(),                      "",                "per-table sharding over embedding_sharding, e.g. 0:row,3:column (tables numbered from 0)"},
  // ---- [checkpoint] ----
  {"checkpoint.dir",                string_key(),                      "",                "checkpoint directory (empty = no checkpoints)"},
  {"checkpoint.every",              int_key(0),                        "0",               "write a checkpoint every N steps (0 = only at the end)"},
  {"checkpoint.keep",               int_key(1),                        "3",               "number of most recent checkpoints to keep"},
  {"checkpoint.resume",             string_key(),                      "",                "'' = start fresh, 'auto' = latest in dir, or a checkpoint path"},
  // ---- [export] ----
  {"export.checkpoint",             string_key(),                      "",                "export: trained parameters, a params .h5 file or a directory holding params.h5 (empty = train.out_dir)"},
  {"export.out",                    string_key(),                      "",                "export: output file (empty = train.out_dir/model.h5 or model.onnx)"},
  {"export.format",                 choice_key("hdf5|onnx"),           "hdf5",            "export: HDF5 serving file (docs/export_format.md) or ONNX graph"},
  {"export.quantize",               choice_key("none|fp16|int8"),      "none",            "export: embedding tables as fp32, fp16 or int8 row-wise; the AUC change is measured on data.test"},
  // ---- [predict] ----
  {"predict.model",                 string_key(),                      "",                "predict: the HDF5 export to score with"},
  {"predict.input",                 string_key(),                      "",                "predict: TSV rows (plain or gzip), with or without the label column"},
  {"predict.out",                   string_key(),                      "",                "predict: output file, one probability per input row, in order"},
  {"predict.device",                choice_key("auto|cpu|cuda"),       "auto",            "predict: where to score (auto: the GPU when one is present)"},
  {"predict.batch_size",            int_key(1),                        "4096",            "predict: rows scored per forward pass"},
  // ---- [profiling] ----
  {"profiling.nvtx",                bool_key(),                        "false",           "emit NVTX ranges for Nsight Systems"},
  {"profiling.trace",               string_key(),                      "",                "write a Chrome/Perfetto trace JSON to this file (empty = none)"},
  {"profiling.step_timers",         bool_key(),                        "true",            "time each phase of the step and report it with the progress line"},
  // ---- [synth] ----
  {"synth.rows_train",              int_key(1),                        "1000000",         "synth: rows written to data.train"},
  {"synth.rows_test",               int_key(1),                        "200000",          "synth: rows written to data.test"},
  {"synth.seed",                    int_key(0),                        "1",               "synth: seed of the generator (same seed, same bytes)"},
  {"synth.min_cardinality",         int_key(2),                        "1000",            "synth: distinct values of the smallest categorical feature"},
  {"synth.max_cardinality",         int_key(2),                        "100000",          "synth: distinct values of the largest categorical feature"},
  {"synth.zipf_exponent",           positive_float_key(),              "1.1",             "synth: Zipf exponent of categorical value frequencies"},
  {"synth.logit_std",               positive_float_key(),              "1.25",            "synth: spread of the planted logit (larger = higher attainable AUC)"},
  // ---- [bench] ----
  {"bench.target",                  choice_key("dlrm|comm|loader|sharding"), "dlrm",      "bench: what to benchmark (dlrm: the model in [model] on generated batches; comm: collectives; loader: data loading vs the trainer; sharding: all-to-all time and memory per rank of each embedding sharding mode)"},
  {"bench.steps",                   int_key(1),                        "50",              "bench: timed training steps"},
  {"bench.warmup",                  int_key(0),                        "5",               "bench: untimed steps before timing"},
  {"bench.host_batches",            bool_key(),                        "false",           "bench dlrm on a GPU: keep the generated batches in page-locked host memory and copy each step's batch to the device, as training from the shard loader does (false: batches already on the device)"},
  {"bench.rows_per_table",          int_key(1),                        "1000000",         "bench: rows of each embedding table with generated batches"},
  {"bench.loader_rows",             int_key(1000),                     "300000",          "bench loader: rows of generated Criteo-format data"},
  {"bench.tables",                  int_key(1),                        "26",              "bench: number of embedding tables (categorical features)"},
};
// clang-format on

std::string section_of(const std::string& name) { return name.substr(0, name.find('.')); }
std::string leaf_of(const std::string& name) { return name.substr(name.find('.') + 1); }

std::string trim(const std::string& s) {
  size_t b = s.find_first_not_of(" \t\r\n");
  if (b == std::string::npos) return "";
  size_t e = s.find_last_not_of(" \t\r\n");
  return s.substr(b, e - b + 1);
}

std::string lower(std::string s) {
  for (char& c : s) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return s;
}

std::string format_number(double v) {
  if (std::isinf(v)) return v > 0 ? "inf" : "-inf";
  char buf[64];
  auto r = std::to_chars(buf, buf + sizeof buf, v);
  return std::string(buf, r.ptr);
}

std::string describe_range(const ConfigSpec& s) {
  bool has_lo = !std::isinf(s.lo), has_hi = !std::isinf(s.hi);
  if (has_lo && has_hi) {
    return std::string(" in ") + (s.lo_open ? "(" : "[") + format_number(s.lo) + ", " +
           format_number(s.hi) + (s.hi_open ? ")" : "]");
  }
  if (has_lo) return std::string(s.lo_open ? " > " : " >= ") + format_number(s.lo);
  if (has_hi) return std::string(s.hi_open ? " < " : " <= ") + format_number(s.hi);
  return "";
}

bool in_range(const ConfigSpec& s, double v) {
  if (s.lo_open ? !(v > s.lo) : !(v >= s.lo)) return false;
  if (s.hi_open ? !(v < s.hi) : !(v <= s.hi)) return false;
  return true;
}

bool parse_int(const std::string& text, int64_t* out) {
  const char* b = text.data();
  const char* e = b + text.size();
  if (b != e && *b == '+') ++b;
  auto r = std::from_chars(b, e, *out);
  return b != e && r.ec == std::errc() && r.ptr == e;
}

bool parse_float(const std::string& text, double* out) {
  const char* b = text.data();
  const char* e = b + text.size();
  if (b != e && *b == '+') ++b;
  auto r = std::from_chars(b, e, *out, std::chars_format::general);
  return b != e && r.ec == std::errc() && r.ptr == e && std::isfinite(*out);
}

std::vector<std::string> split_list(const std::string& text) {
  std::vector<std::string> items;
  if (trim(text).empty()) return items;
  std::string item;
  std::istringstream is(text);
  while (std::getline(is, item, ',')) items.push_back(trim(item));
  if (!text.empty() && text.back() == ',') items.push_back("");
  return items;
}

size_t edit_distance(const std::string& a, const std::string& b) {
  std::vector<size_t> prev(b.size() + 1), cur(b.size() + 1);
  for (size_t j = 0; j <= b.size(); ++j) prev[j] = j;
  for (size_t i = 1; i <= a.size(); ++i) {
    cur[0] = i;
    for (size_t j = 1; j <= b.size(); ++j) {
      cur[j] = std::min({prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (a[i - 1] == b[j - 1] ? 0 : 1)});
    }
    std::swap(prev, cur);
  }
  return prev[b.size()];
}

const char* type_word(ConfigType t) {
  switch (t) {
    case ConfigType::kInt: return "INT";
    case ConfigType::kFloat: return "FLOAT";
    case ConfigType::kBool: return "BOOL";
    case ConfigType::kString: return "STR";
    case ConfigType::kIntList: return "INT,...";
    case ConfigType::kStringList: return "STR,...";
  }
  return "?";
}

// The compact form used in `--help`: "int >= 1", "dlrm|dcnv2", "int list, each >= 1".
std::string short_spec(const ConfigSpec& s) {
  std::string range = describe_range(s);
  switch (s.type) {
    case ConfigType::kInt: return "int" + range;
    case ConfigType::kFloat: return "float" + range;
    case ConfigType::kBool: return "bool";
    case ConfigType::kString: return *s.choices ? s.choices : "string";
    case ConfigType::kIntList: return "int list" + (range.empty() ? "" : ", each" + range);
    case ConfigType::kStringList: return "list";
  }
  return "?";
}

}  // namespace

const std::vector<std::string> kConfigSections = {"model",      "data",       "train",    "optimizer",
                                                  "parallel",   "checkpoint", "profiling", "synth", "bench",
                                                  "export",     "predict"};

ConfigSpec int_key(double lo, double hi) { return {ConfigType::kInt, lo, hi}; }
ConfigSpec float_key(double lo, double hi) { return {ConfigType::kFloat, lo, hi}; }
ConfigSpec positive_float_key() { return {ConfigType::kFloat, 0, kInf, /*lo_open=*/true}; }
ConfigSpec float_key_below(double lo, double hi) {
  return {ConfigType::kFloat, lo, hi, /*lo_open=*/false, /*hi_open=*/true};
}
ConfigSpec bool_key() { return {ConfigType::kBool}; }
ConfigSpec string_key() { return {ConfigType::kString}; }
ConfigSpec choice_key(const char* choices) {
  ConfigSpec s{ConfigType::kString};
  s.choices = choices;
  return s;
}
ConfigSpec int_list_key(double lo, int min_items) {
  ConfigSpec s{ConfigType::kIntList, lo};
  s.min_items = min_items;
  return s;
}
ConfigSpec string_list_key(int min_items) {
  ConfigSpec s{ConfigType::kStringList};
  s.min_items = min_items;
  return s;
}

const std::vector<ConfigKey>& config_schema() { return kSchema; }

const ConfigKey* find_config_key(const std::string& name) {
  for (const ConfigKey& k : kSchema) {
    if (name == k.name) return &k;
  }
  return nullptr;
}

std::string describe_config_spec(const ConfigSpec& s) {
  std::string range = describe_range(s);
  std::string items = s.min_items > 0 ? " (at least " + std::to_string(s.min_items) + ")" : "";
  switch (s.type) {
    case ConfigType::kInt: return "an integer" + range;
    case ConfigType::kFloat: return "a number" + range;
    case ConfigType::kBool: return "a boolean (true|false|yes|no|on|off|1|0)";
    case ConfigType::kString:
      return *s.choices ? std::string("one of ") + s.choices : std::string("a string");
    case ConfigType::kIntList: return "a comma-separated list of integers" + range + items;
    case ConfigType::kStringList: return "a comma-separated list of names" + items;
  }
  return "?";
}

ConfigValue parse_config_value(const ConfigKey& key, const std::string& raw, const std::string& where) {
  const ConfigSpec& s = key.spec;
  std::string text = trim(raw);
  auto fail = [&](const std::string& detail = "") -> ConfigError {
    std::string name = key.name;
    return ConfigError((where.empty() ? "" : where + ": ") + "[" + section_of(name) + "] " +
                       leaf_of(name) + ": expected " + describe_config_spec(s) + ", got '" + raw + "'" +
                       detail);
  };
  switch (s.type) {
    case ConfigType::kInt: {
      int64_t v;
      if (!parse_int(text, &v) || !in_range(s, static_cast<double>(v))) throw fail();
      return v;
    }
    case ConfigType::kFloat: {
      double v;
      if (!parse_float(text, &v) || !in_range(s, v)) throw fail();
      return v;
    }
    case ConfigType::kBool: {
      std::string t = lower(text);
      if (t == "true" || t == "yes" || t == "on" || t == "1") return true;
      if (t == "false" || t == "no" || t == "off" || t == "0") return false;
      throw fail();
    }
    case ConfigType::kString: {
      if (*s.choices) {
        std::string all = std::string("|") + s.choices + "|";
        if (text.empty() || text.find('|') != std::string::npos ||
            all.find("|" + text + "|") == std::string::npos) {
          throw fail();
        }
      }
      return *s.choices ? text : raw;  // free strings keep their spaces (a quoted " " separator)
    }
    case ConfigType::kIntList: {
      std::vector<int64_t> out;
      for (const std::string& item : split_list(text)) {
        int64_t v;
        if (!parse_int(item, &v) || !in_range(s, static_cast<double>(v))) {
          throw fail(item.empty() ? " (empty item)" : " (bad item '" + item + "')");
        }
        out.push_back(v);
      }
      if (static_cast<int>(out.size()) < s.min_items) throw fail();
      return out;
    }
    case ConfigType::kStringList: {
      std::vector<std::string> out = split_list(text);
      for (const std::string& item : out) {
        if (item.empty()) throw fail(" (empty item)");
      }
      if (static_cast<int>(out.size()) < s.min_items) throw fail();
      return out;
    }
  }
  throw fail();
}

std::string format_config_value(const ConfigKey& key, const ConfigValue& value) {
  std::string out;
  switch (key.spec.type) {
    case ConfigType::kInt: return std::to_string(std::get<int64_t>(value));
    case ConfigType::kFloat: return format_number(std::get<double>(value));
    case ConfigType::kBool: return std::get<bool>(value) ? "true" : "false";
    case ConfigType::kString: return std::get<std::string>(value);
    case ConfigType::kIntList:
      for (int64_t v : std::get<std::vector<int64_t>>(value)) {
        if (!out.empty()) out += ',';
        out += std::to_string(v);
      }
      return out;
    case ConfigType::kStringList:
      for (const std::string& v : std::get<std::vector<std::string>>(value)) {
        if (!out.empty()) out += ',';
        out += v;
      }
      return out;
  }
  return out;
}

std::string suggest_config_key(const std::string& name) {
  // A key written in the wrong section ("train.lr") is found by its leaf name first.
  std::string leaf = name.find('.') == std::string::npos ? name : leaf_of(name);
  std::string best;
  size_t best_d = std::string::npos;
  for (const ConfigKey& k : kSchema) {
    if (leaf_of(k.name) == leaf) return k.name;
    if (std::string(k.name).rfind(name, 0) == 0 && name.find('.') != std::string::npos) return k.name;  // truncated
    size_t d = edit_distance(name, k.name);
    if (d < best_d) best_d = d, best = k.name;
  }
  size_t limit = std::max<size_t>(2, name.size() / 4);
  return best_d <= limit ? best : "";
}

std::string suggest_config_section(const std::string& name) {
  std::string best;
  size_t best_d = std::string::npos;
  for (const std::string& s : kConfigSections) {
    size_t d = edit_distance(name, s);
    if (d < best_d) best_d = d, best = s;
  }
  return best_d <= std::max<size_t>(2, name.size() / 4) ? best : "";
}

boost::program_options::options_description config_options_description() {
  namespace po = boost::program_options;
  po::options_description all("config keys (in the INI file: `key = value` under [section])", 110, 60);
  for (const std::string& section : kConfigSections) {
    po::options_description group("[" + section + "]", 110, 60);
    for (const ConfigKey& k : kSchema) {
      if (section_of(k.name) != section) continue;
      auto* sem = po::value<std::string>()->value_name(type_word(k.spec.type));
      if (k.spec.type == ConfigType::kBool) sem->implicit_value("true");
      std::string def = *k.default_value ? k.default_value : "empty";
      std::string help = std::string(k.help) + " (" + short_spec(k.spec) + "; default " + def + ")";
      group.add_options()(k.name, sem, help.c_str());
    }
    all.add(group);
  }
  return all;
}

}  // namespace rf
