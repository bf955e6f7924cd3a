// Helpers shared by the data tests: temporary files with fixed contents.
#pragma once

#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <string>

#include <gtest/gtest.h>

namespace rf::data::testing {

// A path in the temp dir unique to this process and test; removed by the caller's TempFile.
inline std::string temp_path(const std::string& stem) {
  const auto* info = ::testing::UnitTest::GetInstance()->current_test_info();
  std::string name = std::string("rf_data_") + std::to_string(getpid()) + "_" + info->name() + "_" + stem;
  return (std::filesystem::temp_directory_path() / name).string();
}

struct TempFile {
  std::string path;
  explicit TempFile(const std::string& stem, const std::string& contents = "") : path(temp_path(stem)) {
    std::ofstream(path, std::ios::binary) << contents;
  }
  ~TempFile() { std::filesystem::remove(path); }
};

inline std::string read_bytes(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), {});
}

}  // namespace rf::data::testing
