// recforge errors: typed exceptions that carry the source location (and rank/host where known) up to
// the command line, which turns them into one message and an exit code. Nothing below main() exits.
#pragma once

#include <stdexcept>
#include <string>
#include <sstream>

namespace rf {

// Exit codes the command uses: 2 for bad user input (config, data), 1 for everything else.
inline constexpr int kExitBadInput = 2;
inline constexpr int kExitFailure = 1;

class Error : public std::runtime_error {
 public:
  explicit Error(const std::string& what) : std::runtime_error(what) {}
  virtual int exit_code() const { return kExitFailure; }
};

// The user's input is wrong: a config key, a data row, a file that is missing.
class InputError : public Error {
 public:
  using Error::Error;
  int exit_code() const override { return kExitBadInput; }
};
class ConfigError : public InputError { using InputError::InputError; };
class DataError : public InputError { using InputError::InputError; };

// Programming or runtime failures: shape mismatch, backend error, I/O failure.
class ShapeError : public Error { using Error::Error; };
class BackendError : public Error { using Error::Error; };  // CUDA, NCCL, MPI, BLAS, HDF5

// Set once by the process group so that backend errors name the rank and host that raised them.
void set_process_identity(int rank, const std::string& host);
std::string process_identity();  // "rank 3 on node07", or "" for a world of one

[[noreturn]] void throw_backend_error(const char* library, long code, const std::string& message,
                                      const char* expr, const char* file, int line);
[[noreturn]] void throw_check_failed(const char* cond, const std::string& message, const char* file,
                                     int line);

namespace detail {
template <class... Args>
std::string concat(Args&&... args) {
  std::ostringstream os;
  (os << ... << args);
  return os.str();
}
}  // namespace detail

}  // namespace rf

// Internal invariant: throws rf::Error with file:line when `cond` is false. Arguments after the
// condition are streamed into the message.
#define RF_CHECK(cond, ...)                                                                       \
  do {                                                                                            \
    if (!(cond)) ::rf::throw_check_failed(#cond, ::rf::detail::concat(__VA_ARGS__), __FILE__, __LINE__); \
  } while (0)

// Backend checks. Each needs its library's header at the place where it is used.
#define RF_CHECK_CUDA(expr)                                                                       \
  do {                                                                                            \
    cudaError_t rf_err_ = (expr);                                                                 \
    if (rf_err_ != cudaSuccess)                                                                   \
      ::rf::throw_backend_error("CUDA", static_cast<long>(rf_err_), cudaGetErrorString(rf_err_), #expr, \
                                __FILE__, __LINE__);                                              \
  } while (0)

#define RF_CHECK_NCCL(expr)                                                                       \
  do {                                                                                            \
    ncclResult_t rf_err_ = (expr);                                                                \
    if (rf_err_ != ncclSuccess)                                                                   \
      ::rf::throw_backend_error("NCCL", static_cast<long>(rf_err_), ncclGetErrorString(rf_err_), #expr, \
                                __FILE__, __LINE__);                                              \
  } while (0)

#define RF_CHECK_MPI(expr)                                                                        \
  do {                                                                                            \
    int rf_err_ = (expr);                                                                         \
    if (rf_err_ != MPI_SUCCESS) {                                                                 \
      char rf_msg_[MPI_MAX_ERROR_STRING];                                                         \
      int rf_len_ = 0;                                                                            \
      MPI_Error_string(rf_err_, rf_msg_, &rf_len_);                                               \
      ::rf::throw_backend_error("MPI", rf_err_, std::string(rf_msg_, rf_len_), #expr, __FILE__, __LINE__); \
    }                                                                                             \
  } while (0)
