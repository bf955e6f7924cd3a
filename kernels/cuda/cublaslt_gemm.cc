// cuBLASLt GEMMs for recforge (see cublaslt_gemm.h). One handle and one 32 MiB workspace per device,
// created on first use; the algorithm the heuristic picks is cached per (shape, types, epilogue,
// alignment), so the step loop pays the heuristic once per layer shape. Row-major operands are handed
// to column-major cuBLASLt as the transposed product: D^T[n, m] = op(B)^T op(A)^T.
#include "kernels/cuda/cublaslt_gemm.h"

#include <cublasLt.h>
#include <cuda_runtime.h>

#include <cstring>
#include <map>
#include <mutex>
#include <string>
#include <tuple>

#include "src/core/allocator.h"
#include "src/core/error.h"
#include "src/core/precision.h"

#define RF_CHECK_CUBLAS(expr)                                                                        \
  do {                                                                                               \
    cublasStatus_t rf_st_ = (expr);                                                                  \
    if (rf_st_ != CUBLAS_STATUS_SUCCESS)                                                             \
      ::rf::throw_backend_error("cuBLASLt", static_cast<long>(rf_st_), cublasLtGetStatusString(rf_st_), #expr, \
                                __FILE__, __LINE__);                                                 \
  } while (0)

namespace rf::cuda {
namespace {

// Hopper's cuBLAS guidance: 32 MiB lets every kernel (split-K included) run without falling back.
constexpr size_t kWorkspaceBytes = 32u << 20;
constexpr int kMaxDevices = 64;

struct DeviceLt {
  cublasLtHandle_t handle = nullptr;
  void* workspace = nullptr;
};

int alignment_of(const void* p) {
  const uintptr_t a = reinterpret_cast<uintptr_t>(p);
  if (a == 0) return 256;
  int al = 1;
  while (al < 256 && (a % (al * 2)) == 0) al *= 2;
  return al;
}

using Key = std::tuple<int, bool, bool, int64_t, int64_t, int64_t, int64_t, int64_t, int64_t, int, int, int, int,
                       bool, bool, int, int, int, int>;
struct Cached {
  bool found = false;
  cublasLtMatmulAlgo_t algo{};
};

std::mutex g_mutex;
DeviceLt g_devices[kMaxDevices];
std::map<Key, Cached> g_algos;

// The current device's compute stream (src/core/allocator.h), where every recforge op is queued.
cudaStream_t compute_stream() { return static_cast<cudaStream_t>(current_compute_stream()); }

DeviceLt& device_lt(int device) {
  RF_CHECK(device >= 0 && device < kMaxDevices, "cuBLASLt: device index ", device, " out of range");
  DeviceLt& d = g_devices[device];
  if (d.handle == nullptr) {
    RF_CHECK_CUBLAS(cublasLtCreate(&d.handle));
    d.workspace = device_allocate(kWorkspaceBytes, device);
  }
  return d;
}

// RAII holders so that an exception between create and destroy leaks nothing.
struct Desc {
  cublasLtMatmulDesc_t h = nullptr;
  ~Desc() { if (h) cublasLtMatmulDescDestroy(h); }
};
struct Layout {
  cublasLtMatrixLayout_t h = nullptr;
  ~Layout() { if (h) cublasLtMatrixLayoutDestroy(h); }
};
struct Pref {
  cublasLtMatmulPreference_t h = nullptr;
  ~Pref() { if (h) cublasLtMatmulPreferenceDestroy(h); }
};

std::string describe(const GemmArgs& g) {
  return std::to_string(g.m) + "x" + std::to_string(g.n) + "x" + std::to_string(g.k) + " " + dtype_name(g.ab_type) +
         "->" + dtype_name(g.d_type) + (g.trans_a ? " A^T" : "") + (g.trans_b ? " B^T" : "") +
         (g.bias ? " +bias" : "") + (g.relu ? " relu" : "");
}

// One attempt with the given epilogue; false when the heuristic finds no algorithm.
bool run(const GemmArgs& g, bool fused) {
  DeviceLt& lt = device_lt(g.device);
  const bool with_bias = fused && g.bias != nullptr;
  const bool with_relu = fused && g.relu;
  cublasLtEpilogue_t epi = CUBLASLT_EPILOGUE_DEFAULT;
  if (with_bias && with_relu) epi = CUBLASLT_EPILOGUE_RELU_BIAS;
  else if (with_bias) epi = CUBLASLT_EPILOGUE_BIAS;
  else if (with_relu) epi = CUBLASLT_EPILOGUE_RELU;

  const cublasComputeType_t compute =
      (g.ab_type == DType::kF32 && g.tf32) ? CUBLAS_COMPUTE_32F_FAST_TF32 : CUBLAS_COMPUTE_32F;
  const cudaDataType_t ab = cuda_type(g.ab_type), dt = cuda_type(g.d_type);

  // Column-major view: D'[n, m] = op'(B) [n, k] * op'(A) [k, m].
  const cublasOperation_t op_b = g.trans_b ? CUBLAS_OP_T : CUBLAS_OP_N;  // first operand
  const cublasOperation_t op_a = g.trans_a ? CUBLAS_OP_T : CUBLAS_OP_N;  // second operand
  Desc desc;
  RF_CHECK_CUBLAS(cublasLtMatmulDescCreate(&desc.h, compute, CUDA_R_32F));
  RF_CHECK_CUBLAS(cublasLtMatmulDescSetAttribute(desc.h, CUBLASLT_MATMUL_DESC_TRANSA, &op_b, sizeof(op_b)));
  RF_CHECK_CUBLAS(cublasLtMatmulDescSetAttribute(desc.h, CUBLASLT_MATMUL_DESC_TRANSB, &op_a, sizeof(op_a)));
  RF_CHECK_CUBLAS(cublasLtMatmulDescSetAttribute(desc.h, CUBLASLT_MATMUL_DESC_EPILOGUE, &epi, sizeof(epi)));
  if (with_bias) {
    const void* bias = g.bias;
    const int32_t bias_type = static_cast<int32_t>(dt);
    RF_CHECK_CUBLAS(cublasLtMatmulDescSetAttribute(desc.h, CUBLASLT_MATMUL_DESC_BIAS_POINTER, &bias, sizeof(bias)));
    RF_CHECK_CUBLAS(
        cublasLtMatmulDescSetAttribute(desc.h, CUBLASLT_MATMUL_DESC_BIAS_DATA_TYPE, &bias_type, sizeof(bias_type)));
  }
  Layout la, lb, ld;
  // First operand (row-major B): stored column-major as [n, k] (N) or [k, n] (T), ld = ldb.
  RF_CHECK_CUBLAS(cublasLtMatrixLayoutCreate(&la.h, ab, g.trans_b ? g.k : g.n, g.trans_b ? g.n : g.k, g.ldb));
  // Second operand (row-major A): column-major [k, m] (N) or [m, k] (T), ld = lda.
  RF_CHECK_CUBLAS(cublasLtMatrixLayoutCreate(&lb.h, ab, g.trans_a ? g.m : g.k, g.trans_a ? g.k : g.m, g.lda));
  RF_CHECK_CUBLAS(cublasLtMatrixLayoutCreate(&ld.h, dt, g.n, g.m, g.ldd));

  const int al_a = alignment_of(g.b), al_b = alignment_of(g.a), al_d = alignment_of(g.d);
  const int al_bias = with_bias ? alignment_of(g.bias) : 256;
  const Key key{g.device, g.trans_a, g.trans_b, g.m, g.n, g.k, g.lda, g.ldb, g.ldd, static_cast<int>(g.ab_type),
                static_cast<int>(g.d_type), static_cast<int>(compute), static_cast<int>(epi), g.beta != 0.0f,
                with_bias, al_a, al_b, al_d, al_bias};
  Cached cached;
  {
    std::lock_guard<std::mutex> lock(g_mutex);
    auto it = g_algos.find(key);
    if (it != g_algos.end()) {
      cached = it->second;
    } else {
      Pref pref;
      RF_CHECK_CUBLAS(cublasLtMatmulPreferenceCreate(&pref.h));
      const uint64_t ws = kWorkspaceBytes;
      RF_CHECK_CUBLAS(
          cublasLtMatmulPreferenceSetAttribute(pref.h, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES, &ws, sizeof(ws)));
      const uint32_t aa = al_a, ab_ = al_b, ad = al_d;
      RF_CHECK_CUBLAS(cublasLtMatmulPreferenceSetAttribute(pref.h, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_A_BYTES, &aa,
                                                           sizeof(aa)));
      RF_CHECK_CUBLAS(cublasLtMatmulPreferenceSetAttribute(pref.h, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_B_BYTES, &ab_,
                                                           sizeof(ab_)));
      RF_CHECK_CUBLAS(cublasLtMatmulPreferenceSetAttribute(pref.h, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_C_BYTES, &ad,
                                                           sizeof(ad)));
      RF_CHECK_CUBLAS(cublasLtMatmulPreferenceSetAttribute(pref.h, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_D_BYTES, &ad,
                                                           sizeof(ad)));
      cublasLtMatmulHeuristicResult_t result{};
      int found = 0;
      const cublasStatus_t st =
          cublasLtMatmulAlgoGetHeuristic(lt.handle, desc.h, la.h, lb.h, ld.h, ld.h, pref.h, 1, &result, &found);
      cached.found = st == CUBLAS_STATUS_SUCCESS && found > 0 && result.state == CUBLAS_STATUS_SUCCESS;
      if (cached.found) cached.algo = result.algo;
      g_algos.emplace(key, cached);
    }
  }
  if (!cached.found) return false;
  const float alpha = 1.0f, beta = g.beta;
  const cublasStatus_t st = cublasLtMatmul(lt.handle, desc.h, &alpha, g.b, la.h, g.a, lb.h, &beta, g.d, ld.h, g.d,
                                           ld.h, &cached.algo, lt.workspace, kWorkspaceBytes, compute_stream());
  if (st == CUBLAS_STATUS_NOT_SUPPORTED && fused) return false;
  if (st != CUBLAS_STATUS_SUCCESS)
    throw_backend_error("cuBLASLt", static_cast<long>(st), cublasLtGetStatusString(st) + (" on " + describe(g)),
                        "cublasLtMatmul", __FILE__, __LINE__);
  return true;
}

}  // namespace

bool gemm(const GemmArgs& g) {
  RF_CHECK(g.ab_type == DType::kF32 || g.ab_type == DType::kBF16 || g.ab_type == DType::kF16,
           "cuBLASLt GEMM: operand type ", dtype_name(g.ab_type));
  RF_CHECK(g.d_type == g.ab_type || g.d_type == DType::kF32, "cuBLASLt GEMM: ", dtype_name(g.ab_type),
           " operands cannot write ", dtype_name(g.d_type));
  if (g.m == 0 || g.n == 0) return true;
  // cuBLASLt rejects k == 0; D = beta D is all the product means then.
  if (g.k == 0) {
    RF_CHECK(g.beta == 0.0f || g.beta == 1.0f, "cuBLASLt GEMM: k == 0 with beta ", g.beta);
    if (g.beta == 0.0f) {
      RF_CHECK(g.ldd == g.n, "cuBLASLt GEMM: k == 0 needs a dense D");
      RF_CHECK_CUDA(cudaMemsetAsync(g.d, 0, static_cast<size_t>(g.m * g.n) * dtype_size(g.d_type), compute_stream()));
    }
    return g.bias == nullptr && !g.relu;  // the caller's fallback adds bias/ReLU to the zeros
  }
  const bool wants_epilogue = g.bias != nullptr || g.relu;
  if (run(g, wants_epilogue)) return true;
  if (!wants_epilogue)
    throw BackendError("cuBLASLt has no algorithm for " + describe(g) + " on cuda:" + std::to_string(g.device));
  if (!run(g, false))
    throw BackendError("cuBLASLt has no algorithm for " + describe(g) + " on cuda:" + std::to_string(g.device));
  return false;
}

void gemm_release() {
  std::lock_guard<std::mutex> lock(g_mutex);
  g_algos.clear();
  for (int d = 0; d < kMaxDevices; ++d) {
    if (g_devices[d].handle) {
      cublasLtDestroy(g_devices[d].handle);
      device_free(g_devices[d].workspace, d);
      g_devices[d] = DeviceLt{};
    }
  }
}

}  // namespace rf::cuda
