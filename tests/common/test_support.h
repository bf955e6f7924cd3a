// Helpers of the end-to-end tests: a scratch directory per process, a synthetic data set generated
// once per process, a shell command run to completion with its output and exit code, and the readers
// for the files a training run leaves behind (whole files, the train losses in metrics.jsonl).
#pragma once

#include <sys/wait.h>
#include <unistd.h>

#include <array>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <map>
#include <mutex>
#include <string>
#include <system_error>
#include <utility>
#include <vector>

#include "dataloader/synth.h"

namespace rf::test {

struct CommandResult {
  int exit_code;       // the command's exit status; -1 when it did not exit normally (or popen failed)
  std::string output;  // stdout and stderr together
};

// Runs `cmd` through the shell with stderr merged into stdout and waits for it.
inline CommandResult run_command(const std::string& cmd) {
  FILE* p = ::popen((cmd + " 2>&1").c_str(), "r");
  if (!p) return {-1, "popen failed: " + cmd};
  std::string out;
  std::array<char, 4096> buf;
  size_t n;
  while ((n = std::fread(buf.data(), 1, buf.size(), p)) > 0) out.append(buf.data(), n);
  const int status = ::pclose(p);
  return {WIFEXITED(status) ? WEXITSTATUS(status) : -1, std::move(out)};
}

// The small specs the end-to-end tests train on: cardinalities drawn in [20, max_cardinality], so the
// tables stay small and every value is seen many times.
inline data::SynthSpec small_synth_spec(int64_t rows_train, int64_t rows_test, int64_t max_cardinality,
                                        uint64_t seed) {
  data::SynthSpec spec;
  spec.rows_train = rows_train;
  spec.rows_test = rows_test;
  spec.min_cardinality = 20;
  spec.max_cardinality = max_cardinality;
  spec.seed = seed;
  return spec;
}

// A directory in the temp dir unique to this process and `name`, made empty on the first call for
// `name` (an earlier process with the same pid may have left one behind: pids wrap at pid_max, and a
// stale checkpoint there would change what a test resumes from) and removed when the process exits,
// unless RECFORGE_KEEP_TEST_DIRS is set in the environment (to look at what a failing test left).
inline std::filesystem::path process_dir(const std::string& name) {
  struct Dirs {
    std::mutex mu;
    std::map<std::string, std::filesystem::path> made;
    ~Dirs() {
      if (std::getenv("RECFORGE_KEEP_TEST_DIRS")) return;
      std::error_code ec;  // best effort at exit: never throw from here
      for (const auto& entry : made) std::filesystem::remove_all(entry.second, ec);
    }
  };
  static Dirs dirs;
  std::lock_guard<std::mutex> lock(dirs.mu);
  auto it = dirs.made.find(name);
  if (it == dirs.made.end()) {
    const std::filesystem::path dir =
        std::filesystem::temp_directory_path() / ("rf_" + name + "_" + std::to_string(::getpid()));
    std::filesystem::remove_all(dir);
    std::filesystem::create_directories(dir);
    it = dirs.made.emplace(name, dir).first;
  }
  return it->second;
}

// process_dir(name) holding train.tsv and test.tsv of `spec`. Generated on the first call for `name`
// (later calls reuse it and ignore `spec`); `result`, when given, receives what the generation
// reported (the planted AUC among it).
inline std::filesystem::path synth_dataset(const std::string& name, const data::SynthSpec& spec,
                                           data::SynthResult* result = nullptr) {
  static std::mutex mu;
  static std::map<std::string, std::pair<std::filesystem::path, data::SynthResult>> made;
  std::lock_guard<std::mutex> lock(mu);
  auto it = made.find(name);
  if (it == made.end()) {
    const std::filesystem::path dir = process_dir(name);
    data::SynthResult r = data::synth_write(spec, (dir / "train.tsv").string(), (dir / "test.tsv").string());
    it = made.emplace(name, std::make_pair(dir, std::move(r))).first;
  }
  if (result) *result = it->second.second;
  return it->second.first;
}

// The whole file as bytes ("" when it cannot be read).
inline std::string slurp(const std::filesystem::path& p) {
  std::ifstream in(p, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
}

// train_loss of every evaluation line in a metrics.jsonl.
inline std::vector<double> train_losses(const std::filesystem::path& metrics) {
  std::ifstream in(metrics);
  std::vector<double> out;
  std::string line;
  const std::string key = "\"train_loss\": ";
  while (std::getline(in, line)) {
    const size_t k = line.find(key);
    if (k != std::string::npos) out.push_back(std::stod(line.substr(k + key.size())));
  }
  return out;
}

}  // namespace rf::test
