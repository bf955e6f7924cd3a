// Minimal logging to stderr. In a multi-rank job only rank 0 logs at info level unless asked; warnings
// and errors from every rank are printed with the rank's identity.
#pragma once

#include <string>

#include "src/core/error.h"

namespace rf {

enum class LogLevel { kDebug, kInfo, kWarn, kError };
void set_log_level(LogLevel level);
void set_log_rank(int rank);  // ranks other than 0 drop info/debug lines
void log_line(LogLevel level, const std::string& text);

template <class... Args>
void log_info(Args&&... args) { log_line(LogLevel::kInfo, detail::concat(args...)); }
template <class... Args>
void log_warn(Args&&... args) { log_line(LogLevel::kWarn, detail::concat(args...)); }
template <class... Args>
void log_debug(Args&&... args) { log_line(LogLevel::kDebug, detail::concat(args...)); }

}  // namespace rf
