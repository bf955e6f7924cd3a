// Config: every kind of bad input gives one ConfigError line naming where and what; precedence is
// defaults < file < command line; lists parse; dump() loads back to the same values.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <string>
#include <unistd.h>

#include "src/config/config.h"
#include "tests/common/test_support.h"

namespace rf {
namespace {

// Writes `text` to a fresh file under the test temp dir and returns its path.
std::string write_ini(const std::string& text) {
  static int counter = 0;
  std::string path = (test::process_dir("config") / (std::to_string(counter++) + ".ini")).string();
  std::ofstream(path) << text;
  return path;
}

// Runs `fn`, expects a ConfigError whose message contains every fragment and is one line.
template <class Fn>
std::string expect_config_error(Fn fn, std::initializer_list<std::string> fragments) {
  try {
    fn();
  } catch (const ConfigError& e) {
    std::string msg = e.what();
    for (const std::string& f : fragments) EXPECT_NE(msg.find(f), std::string::npos) << "message: " << msg << "\nmissing: " << f;
    EXPECT_EQ(msg.find('\n'), std::string::npos) << msg;
    EXPECT_EQ(e.exit_code(), kExitBadInput);
    return msg;
  }
  ADD_FAILURE() << "no ConfigError thrown";
  return "";
}

TEST(Config, DefaultsMatchSchema) {
  Config c = Config::defaults();
  EXPECT_EQ(c.get_int("train.batch_size"), 2048);
  EXPECT_EQ(c.get_string("model.type"), "dlrm");
  EXPECT_EQ(c.get_int_list("model.bottom_mlp"), (std::vector<int64_t>{512, 256, 64, 16}));
  EXPECT_TRUE(c.get_int_list("model.table_sizes").empty());
  EXPECT_DOUBLE_EQ(c.get_float("optimizer.eps"), 1e-8);
  EXPECT_FALSE(c.get_bool("profiling.nvtx"));
  EXPECT_TRUE(c.get_bool("profiling.step_timers"));
  EXPECT_EQ(c.get_string("data.multi_hot_separator"), ",");
  EXPECT_EQ(c.source("train.batch_size"), "default");
  EXPECT_FALSE(c.is_set("train.batch_size"));
}

TEST(Config, EverySchemaDefaultParsesAndEveryKeyHasASection) {
  for (const ConfigKey& k : config_schema()) {
    std::string name = k.name;
    std::string section = name.substr(0, name.find('.'));
    EXPECT_NE(std::find(kConfigSections.begin(), kConfigSections.end(), section), kConfigSections.end()) << name;
    EXPECT_NO_THROW(parse_config_value(k, k.default_value, "")) << name;
    EXPECT_GT(std::string(k.help).size(), 0u) << name;
  }
}

TEST(Config, Precedence) {
  std::string path = write_ini(
      "; test\n[train]\nbatch_size = 256\nepochs = 4\n[optimizer]\nlr = 0.5\n");
  Config c = Config::load(path, {"--train.epochs=7", "--optimizer.dense", "adam"});
  EXPECT_EQ(c.get_int("train.batch_size"), 256);  // file over default
  EXPECT_EQ(c.source("train.batch_size"), path + ":3");
  EXPECT_EQ(c.get_int("train.epochs"), 7);  // command line over file
  EXPECT_EQ(c.source("train.epochs"), "command line");
  EXPECT_EQ(c.get_string("optimizer.dense"), "adam");  // "--key value" form
  EXPECT_DOUBLE_EQ(c.get_float("optimizer.lr"), 0.5);
  EXPECT_EQ(c.get_int("train.eval_batch_size"), 16384);  // default
  EXPECT_TRUE(c.is_set("train.epochs"));
  EXPECT_FALSE(c.is_set("train.steps"));
}

TEST(Config, LastOverrideWinsAndBareBoolMeansTrue) {
  Config c = Config::load("", {"--train.epochs=2", "--train.epochs=3", "--profiling.nvtx"});
  EXPECT_EQ(c.get_int("train.epochs"), 3);
  EXPECT_TRUE(c.get_bool("profiling.nvtx"));
}

TEST(Config, Lists) {
  std::string path = write_ini(
      "[model]\nbottom_mlp = 64, 32 ,16\ntop_mlp=8\ntable_sizes =\n"
      "[data]\nschema = label,dense*6,cat*6,multi*1\n");
  Config c = Config::load(path, {"--model.table_sizes=10,20,30"});
  EXPECT_EQ(c.get_int_list("model.bottom_mlp"), (std::vector<int64_t>{64, 32, 16}));
  EXPECT_EQ(c.get_int_list("model.top_mlp"), (std::vector<int64_t>{8}));
  EXPECT_EQ(c.get_int_list("model.table_sizes"), (std::vector<int64_t>{10, 20, 30}));
  EXPECT_EQ(c.get_string_list("data.schema"),
            (std::vector<std::string>{"label", "dense*6", "cat*6", "multi*1"}));
  expect_config_error([] { Config::load("", {"--model.bottom_mlp=64,,16"}); },
                      {"[model] bottom_mlp: expected a comma-separated list of integers >= 1", "empty item"});
  expect_config_error([] { Config::load("", {"--model.bottom_mlp=64,x"}); }, {"bad item 'x'"});
  expect_config_error([] { Config::load("", {"--model.top_mlp="}); }, {"(at least 1)"});
  EXPECT_TRUE(Config::load("", {"--model.bottom_mlp="}).get_int_list("model.bottom_mlp").empty());
  EXPECT_EQ(Config::load("", {"--checkpoint.dir=", "--train.out_dir", "x"}).get_string("checkpoint.dir"), "");
}

TEST(Config, CommentsBlankLinesAndInlineComments) {
  std::string path = write_ini(
      "# header\n\n   ; indented comment\n[ train ]  ; trailing\n  batch_size   =  64   ; inline\n"
      "out_dir = runs/a;b\n[data]\nmulti_hot_separator = \";\"\n");
  Config c = Config::load(path, {});
  EXPECT_EQ(c.get_int("train.batch_size"), 64);
  EXPECT_EQ(c.get_string("train.out_dir"), "runs/a;b");
  EXPECT_EQ(c.get_string("data.multi_hot_separator"), ";");
}

TEST(Config, MissingFile) {
  expect_config_error([] { Config::load("nope.ini", {}); }, {"config file 'nope.ini' not found"});
}

TEST(Config, UnknownKeyInFileNamesLineAndSuggests) {
  std::string path = write_ini("[model]\ntype = dlrm\n\nembeding_dim = 8\n");
  std::string msg = expect_config_error([&] { Config::load(path, {}); },
                                        {path + ":4: unknown key 'model.embeding_dim'",
                                         "(did you mean 'model.embedding_dim'?)"});
  EXPECT_EQ(msg, path + ":4: unknown key 'model.embeding_dim' (did you mean 'model.embedding_dim'?)");
}

TEST(Config, KeyInWrongSectionSuggestsTheRightOne) {
  std::string path = write_ini("[train]\nlr = 0.1\n");
  expect_config_error([&] { Config::load(path, {}); },
                      {path + ":2: unknown key 'train.lr'", "did you mean 'optimizer.lr'"});
}

TEST(Config, UnknownSection) {
  std::string path = write_ini("[trian]\nbatch_size = 1\n");
  expect_config_error([&] { Config::load(path, {}); },
                      {path + ":1: unknown section [trian]", "did you mean [train]"});
}

TEST(Config, UnknownOverride) {
  expect_config_error([] { Config::load("", {"--train.lrr=0.1"}); },
                      {"--train.lrr=0.1: unknown key 'train.lrr'"});
  expect_config_error([] { Config::load("", {"--optimizer.lrr=0.1"}); },
                      {"--optimizer.lrr=0.1: unknown key 'optimizer.lrr' (did you mean 'optimizer.lr'?)"});
  // No prefix guessing: a truncated name is unknown, not silently completed.
  expect_config_error([] { Config::load("", {"--train.batch=4"}); }, {"unknown key 'train.batch' (did you mean 'train.batch_size'?)"});
  expect_config_error([] { Config::load("", {"stray"}); }, {"unexpected argument 'stray'"});
  expect_config_error([] { Config::load("", {"--train.batch_size"}); }, {"command line:"});
}

TEST(Config, WrongType) {
  std::string path = write_ini("[train]\n\nbatch_size = abc\n");
  std::string msg = expect_config_error([&] { Config::load(path, {}); }, {});
  EXPECT_EQ(msg, path + ":3: [train] batch_size: expected an integer >= 1, got 'abc'");
  expect_config_error([] { Config::load("", {"--optimizer.lr=fast"}); },
                      {"--optimizer.lr=fast: [optimizer] lr: expected a number > 0, got 'fast'"});
  expect_config_error([] { Config::load("", {"--profiling.nvtx=maybe"}); },
                      {"[profiling] nvtx: expected a boolean", "got 'maybe'"});
  expect_config_error([] { Config::load("", {"--model.type=dlrmm"}); },
                      {"[model] type: expected one of dlrm|dcnv2, got 'dlrmm'"});
  expect_config_error([] { Config::load("", {"--train.epochs=1.5"}); }, {"expected an integer"});
}

TEST(Config, OutOfRangeNamesTheRange) {
  expect_config_error([] { Config::load("", {"--train.batch_size=0"}); },
                      {"[train] batch_size: expected an integer >= 1, got '0'"});
  expect_config_error([] { Config::load("", {"--optimizer.lr=0"}); }, {"expected a number > 0"});
  expect_config_error([] { Config::load("", {"--optimizer.beta1=1"}); },
                      {"[optimizer] beta1: expected a number in [0, 1), got '1'"});
  expect_config_error([] { Config::load("", {"--model.bottom_mlp=64,0"}); }, {"integers >= 1", "bad item '0'"});
}

TEST(Config, MalformedLine) {
  std::string path = write_ini("[train]\nbatch_size 64\n");
  expect_config_error([&] { Config::load(path, {}); },
                      {path + ":2: expected 'key = value', '[section]' or a comment, got 'batch_size 64'"});
  std::string path2 = write_ini("[train\n");
  expect_config_error([&] { Config::load(path2, {}); }, {path2 + ":1: malformed section header"});
}

TEST(Config, DuplicateKey) {
  std::string path = write_ini("[train]\nepochs = 1\n[model]\ntype = dlrm\n[train]\nepochs = 2\n");
  expect_config_error([&] { Config::load(path, {}); },
                      {path + ":6: duplicate key 'train.epochs' (first set at line 2)"});
}

TEST(Config, KeyOutsideSection) {
  std::string path = write_ini("; top\nbatch_size = 3\n[train]\n");
  expect_config_error([&] { Config::load(path, {}); },
                      {path + ":2: key 'batch_size' is outside any [section]", "did you mean 'train.batch_size'"});
}

TEST(Config, GetterMisuseIsAProgrammingError) {
  Config c = Config::defaults();
  EXPECT_THROW(c.get_int("train.nope"), Error);
  EXPECT_THROW(c.get_float("train.batch_size"), Error);
  try {
    c.get_string("train.batch_size");
  } catch (const ConfigError&) {
    ADD_FAILURE() << "getter misuse must not look like bad user input";
  } catch (const Error&) {
  }
}

TEST(Config, DumpRoundTrip) {
  std::string path = write_ini("[model]\ntype = dcnv2\nbottom_mlp = 7,5\n[data]\nschema = label,dense*2\n");
  Config a = Config::load(path, {"--optimizer.lr=0.0123456789", "--data.multi_hot_separator=; ",
                                 "--train.out_dir= spaced out ", "--profiling.nvtx=yes",
                                 "--optimizer.adagrad_init=3e-7"});
  std::string dumped = a.dump();
  EXPECT_NE(dumped.find("[optimizer]"), std::string::npos);
  EXPECT_NE(dumped.find("; from command line"), std::string::npos);
  EXPECT_NE(dumped.find("; from " + path + ":2"), std::string::npos);
  EXPECT_NE(dumped.find("; from default"), std::string::npos);
  Config b = Config::load(write_ini(dumped), {});
  for (const ConfigKey& k : config_schema()) {
    switch (k.spec.type) {
      case ConfigType::kInt: EXPECT_EQ(a.get_int(k.name), b.get_int(k.name)) << k.name; break;
      case ConfigType::kFloat: EXPECT_EQ(a.get_float(k.name), b.get_float(k.name)) << k.name; break;
      case ConfigType::kBool: EXPECT_EQ(a.get_bool(k.name), b.get_bool(k.name)) << k.name; break;
      case ConfigType::kString: EXPECT_EQ(a.get_string(k.name), b.get_string(k.name)) << k.name; break;
      case ConfigType::kIntList: EXPECT_EQ(a.get_int_list(k.name), b.get_int_list(k.name)) << k.name; break;
      case ConfigType::kStringList:
        EXPECT_EQ(a.get_string_list(k.name), b.get_string_list(k.name)) << k.name;
        break;
    }
  }
  EXPECT_EQ(b.get_string("data.multi_hot_separator"), "; ");  // quoted by dump, kept by the reader
  EXPECT_EQ(b.get_string("train.out_dir"), " spaced out ");
}

TEST(Config, HelpDescriptionListsEveryKeyBySection) {
  std::ostringstream os;
  os << config_options_description();
  std::string help = os.str();
  for (const std::string& s : kConfigSections) EXPECT_NE(help.find("[" + s + "]"), std::string::npos) << s;
  for (const ConfigKey& k : config_schema()) EXPECT_NE(help.find(std::string("--") + k.name), std::string::npos) << k.name;
}

TEST(Config, ShippedConfigsLoad) {
  for (const auto& entry : std::filesystem::directory_iterator(RECFORGE_SOURCE_DIR "/configs")) {
    if (entry.path().extension() != ".ini") continue;
    SCOPED_TRACE(entry.path().string());
    EXPECT_NO_THROW(Config::load(entry.path().string(), {}));
  }
  Config c = Config::load(RECFORGE_SOURCE_DIR "/configs/dlrm_tiny.ini", {});
  EXPECT_EQ(c.get_int_list("model.bottom_mlp").back(), c.get_int("model.embedding_dim"));
}

}  // namespace
}  // namespace rf
