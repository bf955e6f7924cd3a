// stderr logging with a level and a rank filter.
#include "src/core/log.h"

#include <cstdio>
#include <mutex>

namespace rf {
namespace {
LogLevel g_level = LogLevel::kInfo;
int g_rank = 0;
std::mutex g_mutex;
}  // namespace

void set_log_level(LogLevel level) { g_level = level; }
void set_log_rank(int rank) { g_rank = rank; }

void log_line(LogLevel level, const std::string& text) {
  if (level < g_level) return;
  if (level <= LogLevel::kInfo && g_rank != 0) return;
  static const char* kNames[] = {"debug", "info", "warn", "error"};
  std::lock_guard<std::mutex> lock(g_mutex);
  std::string id = process_identity();
  if (level >= LogLevel::kWarn && !id.empty())
    std::fprintf(stderr, "[recforge %s] %s: %s\n", kNames[static_cast<int>(level)], id.c_str(), text.c_str());
  else
    std::fprintf(stderr, "[recforge %s] %s\n", kNames[static_cast<int>(level)], text.c_str());
}

}  // namespace rf
