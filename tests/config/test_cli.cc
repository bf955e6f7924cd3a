// Runs the built `recforge` binary: bad input gives exit code 2 and one "recforge: ..." line on stderr;
// --print-config and --help succeed; placeholders and unknown commands say what they are.
#include <gtest/gtest.h>

#include <fstream>
#include <string>
#include <utility>

#include "tests/common/test_support.h"

namespace {

struct Result {
  int code;
  std::string out;  // stdout and stderr together
};

Result run_recforge(const std::string& args) {
  rf::test::CommandResult r = rf::test::run_command(std::string("'") + RECFORGE_BIN + "' " + args);
  return {r.exit_code, std::move(r.output)};
}

const std::string kTiny = RECFORGE_SOURCE_DIR "/configs/dlrm_tiny.ini";

TEST(Cli, UnknownOverrideIsOneLineExit2) {
  Result r = run_recforge("train --config " + kTiny + " --optimizer.lrr=0.1");
  EXPECT_EQ(r.code, 2) << r.out;
  EXPECT_EQ(r.out, "recforge: --optimizer.lrr=0.1: unknown key 'optimizer.lrr' (did you mean 'optimizer.lr'?)\n");
}

TEST(Cli, BadKeyInFileNamesLine) {
  std::string path = (rf::test::process_dir("cli") / "bad_key.ini").string();
  std::ofstream(path) << "[train]\nbatch_sise = 4\n";
  Result r = run_recforge("train --config " + path);
  EXPECT_EQ(r.code, 2);
  EXPECT_EQ(r.out, "recforge: " + path + ":2: unknown key 'train.batch_sise' (did you mean 'train.batch_size'?)\n");
}

TEST(Cli, MissingConfigFile) {
  Result r = run_recforge("eval --config nope.ini");
  EXPECT_EQ(r.code, 2);
  EXPECT_EQ(r.out, "recforge: config file 'nope.ini' not found\n");
}

TEST(Cli, PrintConfig) {
  Result r = run_recforge("train --config " + kTiny + " --train.batch_size=128 --print-config");
  EXPECT_EQ(r.code, 0) << r.out;
  EXPECT_NE(r.out.find("[train]"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("batch_size = 128"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("; from command line"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("; from " + kTiny + ":"), std::string::npos) << r.out;
}

TEST(Cli, Help) {
  Result top = run_recforge("--help");
  EXPECT_EQ(top.code, 0);
  for (const char* c : {"train", "eval", "synth", "bench"}) EXPECT_NE(top.out.find(c), std::string::npos) << c;
  Result sub = run_recforge("train --help");
  EXPECT_EQ(sub.code, 0);
  EXPECT_NE(sub.out.find("--train.batch_size"), std::string::npos);
  EXPECT_NE(sub.out.find("[optimizer]"), std::string::npos);
  EXPECT_NE(sub.out.find("--config"), std::string::npos);
}

TEST(Cli, UnknownCommandListsValidOnes) {
  Result r = run_recforge("trian");
  EXPECT_EQ(r.code, 2);
  EXPECT_NE(r.out.find("unknown command 'trian'"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("train, eval, synth, preprocess, export, predict, bench"), std::string::npos) << r.out;
  EXPECT_EQ(run_recforge("").code, 2);
}

TEST(Cli, WrongValueExit2) {
  Result r = run_recforge("train --train.batch_size=abc");
  EXPECT_EQ(r.code, 2);
  EXPECT_EQ(r.out, "recforge: --train.batch_size=abc: [train] batch_size: expected an integer >= 1, got 'abc'\n");
}

}  // namespace
