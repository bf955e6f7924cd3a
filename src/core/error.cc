// Formatting of recforge errors: every message names where it was raised and, in a multi-rank job,
// which rank on which host.
#include "src/core/error.h"

#include <mutex>

namespace rf {
namespace {
std::mutex g_identity_mutex;
std::string g_identity;
}  // namespace

void set_process_identity(int rank, const std::string& host) {
  std::lock_guard<std::mutex> lock(g_identity_mutex);
  g_identity = "rank " + std::to_string(rank) + " on " + host;
}

std::string process_identity() {
  std::lock_guard<std::mutex> lock(g_identity_mutex);
  return g_identity;
}

static std::string where(const char* file, int line) {
  std::string id = process_identity();
  std::string loc = std::string(file) + ":" + std::to_string(line);
  return id.empty() ? loc : loc + " (" + id + ")";
}

void throw_backend_error(const char* library, long code, const std::string& message, const char* expr,
                         const char* file, int line) {
  throw BackendError(where(file, line) + ": " + library + " error " + std::to_string(code) + " (" +
                     message + ") in " + expr);
}

void throw_check_failed(const char* cond, const std::string& message, const char* file, int line) {
  std::string text = where(file, line) + ": check failed: " + cond;
  if (!message.empty()) text += ": " + message;
  throw Error(text);
}

}  // namespace rf
