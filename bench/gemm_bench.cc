// GEMM throughput of the CPU linear layer (rf::linear_forward / linear_backward on fp32 tensors) on
// the DLRM Criteo Kaggle MLP shapes at batch 2048, with 1 and 2 threads, in fp32 compute (OpenBLAS)
// and bf16 compute (oneDNN, operands rounded to bf16 inside the op), against the ceilings of a 1024^3
// cblas_sgemm and a 1024^3 oneDNN bf16 GEMM measured in the same run. Each shape is validated once
// against a naive GEMM before it is timed; every figure is the median of several runs after warm-up.
#include <cblas.h>
#include <dnnl.h>
#include <dnnl_debug.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <functional>
#include <random>
#include <string>
#include <vector>

#include "kernels/interaction.h"
#include "kernels/linear.h"
#include "kernels/threads.h"
#include "src/core/tensor.h"

// Exported by oneDNN but not declared in 2.6's headers; the declaration kernels/cpu/linear.cc uses.
extern "C" dnnl_status_t dnnl_gemm_bf16bf16f32(char transa, char transb, dnnl_dim_t M, dnnl_dim_t N, dnnl_dim_t K,
                                               float alpha, const rf::bf16* A, dnnl_dim_t lda, const rf::bf16* B,
                                               dnnl_dim_t ldb, float beta, float* C, dnnl_dim_t ldc);

namespace {

constexpr int64_t kBatch = 2048;
constexpr int kWarmup = 2;
constexpr int kRuns = 7;

struct Layer {
  std::string name;
  int64_t in, out;
};

double median_ms(const std::function<void()>& fn) {
  for (int i = 0; i < kWarmup; ++i) fn();
  std::vector<double> ms;
  for (int i = 0; i < kRuns; ++i) {
    auto t0 = std::chrono::steady_clock::now();
    fn();
    auto t1 = std::chrono::steady_clock::now();
    ms.push_back(std::chrono::duration<double, std::milli>(t1 - t0).count());
  }
  std::sort(ms.begin(), ms.end());
  return ms[ms.size() / 2];
}

void fill(rf::Tensor& t, std::mt19937& gen) {
  std::uniform_real_distribution<float> u(-1.0f, 1.0f);
  float* p = t.data<float>();
  for (int64_t i = 0; i < t.numel(); ++i) p[i] = u(gen);
}

// Naive C[M, N] = A[M, K] op B, in double, as the check of the BLAS path (trans_b: B is [N, K]).
std::vector<double> naive_gemm(const float* a, bool trans_a, const float* b, bool trans_b, int64_t m, int64_t n,
                               int64_t k) {
  std::vector<double> c(static_cast<size_t>(m * n), 0.0);
  for (int64_t i = 0; i < m; ++i)
    for (int64_t p = 0; p < k; ++p) {
      const double av = trans_a ? a[p * m + i] : a[i * k + p];
      for (int64_t j = 0; j < n; ++j) c[i * n + j] += av * (trans_b ? b[j * k + p] : b[p * n + j]);
    }
  return c;
}

// The operand values bf16 compute multiplies (round to nearest even), as fp32.
std::vector<float> bf16_rounded(const rf::Tensor& t) {
  std::vector<float> out(static_cast<size_t>(t.numel()));
  const float* p = t.data<float>();
  for (size_t i = 0; i < out.size(); ++i) out[i] = rf::to_f32(rf::to_bf16(p[i]));
  return out;
}

// |fast - ref| <= K * 2^-22 * max|ref| + 1e-5 |ref|: fp32 summation over K terms in any order. Also
// the bound for bf16 compute when `ref` is computed from the bf16-rounded operands (their products
// are exact in fp32, so only the fp32 accumulation differs).
bool check(const char* what, const rf::Tensor& fast, const std::vector<double>& ref, const std::vector<float>* bias,
           int64_t cols, int64_t k) {
  const float* f = fast.data<float>();
  double worst = 0.0;
  size_t bad = 0;
  for (size_t i = 0; i < ref.size(); ++i) {
    const double r = ref[i] + (bias ? (*bias)[i % static_cast<size_t>(cols)] : 0.0);
    const double tol = static_cast<double>(k) * 2.4e-7 + 1e-5 * std::fabs(r);
    const double err = std::fabs(f[i] - r);
    worst = std::max(worst, err);
    if (!(err <= tol)) ++bad;
  }
  if (bad) std::fprintf(stderr, "VALIDATION FAILED: %s: %zu elements out of tolerance (max error %g)\n", what, bad, worst);
  return bad == 0;
}

struct Result {
  double fwd_ms[2], bwd_ms[2];            // fp32 compute, [1 thread, 2 threads]
  double bf16_fwd_ms[2], bf16_bwd_ms[2];  // bf16 compute
};

}  // namespace

int main() {
  // DLRM Kaggle: bottom MLP 13-512-256-64-16; top MLP over the interaction of 26 tables of dim 16
  // (no self-interaction): 16 + 27 * 26 / 2 = 367 inputs, then 512-256-1.
  const int64_t top_in = rf::interaction_output_dim(26, 16, false);
  const std::vector<Layer> layers = {
      {"bot0", 13, 512}, {"bot1", 512, 256}, {"bot2", 256, 64},  {"bot3", 64, 16},
      {"top0", top_in, 512}, {"top1", 512, 256}, {"top2", 256, 1},
  };
  std::mt19937 gen(2048);
  bool ok = true;
  std::vector<Result> results(layers.size());
  const int thread_counts[2] = {1, 2};

  for (size_t li = 0; li < layers.size(); ++li) {
    const Layer& L = layers[li];
    rf::Tensor x = rf::Tensor::empty({kBatch, L.in}, rf::DType::kF32);
    rf::Tensor w = rf::Tensor::empty({L.out, L.in}, rf::DType::kF32);
    rf::Tensor b = rf::Tensor::empty({L.out}, rf::DType::kF32);
    rf::Tensor y = rf::Tensor::empty({kBatch, L.out}, rf::DType::kF32);
    rf::Tensor dy = rf::Tensor::empty({kBatch, L.out}, rf::DType::kF32);
    rf::Tensor dx = rf::Tensor::empty({kBatch, L.in}, rf::DType::kF32);
    rf::Tensor dw = rf::Tensor::empty({L.out, L.in}, rf::DType::kF32);
    rf::Tensor db = rf::Tensor::empty({L.out}, rf::DType::kF32);
    fill(x, gen);
    fill(w, gen);
    fill(b, gen);
    fill(dy, gen);

    // Validate once, before any timing.
    rf::set_num_threads(2);
    rf::linear_forward(x, w, &b, y);
    rf::linear_backward(x, w, dy, &dx, dw, &db);
    std::vector<float> bias(b.data<float>(), b.data<float>() + L.out);
    const std::string n = L.name;
    ok &= check((n + " y").c_str(), y, naive_gemm(x.data<float>(), false, w.data<float>(), true, kBatch, L.out, L.in),
                &bias, L.out, L.in);
    ok &= check((n + " dx").c_str(), dx,
                naive_gemm(dy.data<float>(), false, w.data<float>(), false, kBatch, L.in, L.out), nullptr, L.in, L.out);
    ok &= check((n + " dw").c_str(), dw,
                naive_gemm(dy.data<float>(), true, x.data<float>(), false, L.out, L.in, kBatch), nullptr, L.in, kBatch);

    // bf16 compute against the naive GEMM of the rounded operands.
    const auto bf16 = rf::DType::kBF16;
    rf::linear_forward(x, w, &b, y, bf16);
    rf::linear_backward(x, w, dy, &dx, dw, &db, bf16);
    const std::vector<float> xr = bf16_rounded(x), wr = bf16_rounded(w), dyr = bf16_rounded(dy);
    ok &= check((n + " bf16 y").c_str(), y, naive_gemm(xr.data(), false, wr.data(), true, kBatch, L.out, L.in), &bias,
                L.out, L.in);
    ok &= check((n + " bf16 dx").c_str(), dx, naive_gemm(dyr.data(), false, wr.data(), false, kBatch, L.in, L.out),
                nullptr, L.in, L.out);
    ok &= check((n + " bf16 dw").c_str(), dw, naive_gemm(dyr.data(), true, xr.data(), false, L.out, L.in, kBatch),
                nullptr, L.in, kBatch);

    for (int t = 0; t < 2; ++t) {
      rf::set_num_threads(thread_counts[t]);
      results[li].fwd_ms[t] = median_ms([&] { rf::linear_forward(x, w, &b, y); });
      results[li].bwd_ms[t] = median_ms([&] { rf::linear_backward(x, w, dy, &dx, dw, &db); });
      results[li].bf16_fwd_ms[t] = median_ms([&] { rf::linear_forward(x, w, &b, y, bf16); });
      results[li].bf16_bwd_ms[t] = median_ms([&] { rf::linear_backward(x, w, dy, &dx, dw, &db, bf16); });
    }
  }

  // Ceiling: a large square SGEMM straight into OpenBLAS.
  constexpr int kN = 1024;
  std::vector<float> a(kN * kN), bb(kN * kN), c(kN * kN);
  std::uniform_real_distribution<float> u(-1.0f, 1.0f);
  for (auto* v : {&a, &bb})
    for (auto& e : *v) e = u(gen);
  double ceiling[2];
  const double ceiling_flop = 2.0 * kN * kN * kN;
  for (int t = 0; t < 2; ++t) {
    rf::set_num_threads(thread_counts[t]);
    double ms = median_ms([&] {
      cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, kN, kN, kN, 1.0f, a.data(), kN, bb.data(), kN, 0.0f,
                  c.data(), kN);
    });
    ceiling[t] = ceiling_flop / (ms * 1e6);
  }
  // bf16 ceiling: the same square GEMM on bf16 operands straight into oneDNN (no rounding pass).
  std::vector<rf::bf16> a16(kN * kN), b16(kN * kN);
  for (size_t i = 0; i < a16.size(); ++i) {
    a16[i] = rf::to_bf16(a[i]);
    b16[i] = rf::to_bf16(bb[i]);
  }
  double ceiling_bf16[2];
  for (int t = 0; t < 2; ++t) {
    rf::set_num_threads(thread_counts[t]);
    double ms = median_ms([&] {
      if (dnnl_gemm_bf16bf16f32('N', 'N', kN, kN, kN, 1.0f, a16.data(), kN, b16.data(), kN, 0.0f, c.data(), kN) !=
          dnnl_success)
        std::fprintf(stderr, "dnnl_gemm_bf16bf16f32 failed\n");
    });
    ceiling_bf16[t] = ceiling_flop / (ms * 1e6);
  }
  // The instruction set oneDNN dispatches to (avx512_core_bf16 has vdpbf16ps; below it bf16 is emulated).
  const char* isa = dnnl_cpu_isa2str(dnnl_get_effective_cpu_isa());

  // Table. Forward: 2 B in out flops; backward: dx and dw, 4 B in out (db's B out adds are not counted).
  std::printf("oneDNN ISA: %s\n", isa);
  std::printf("%-6s %-12s %-4s %7s %9s %9s %9s %9s %7s\n", "layer", "shape", "pass", "threads", "fp32 ms", "GFLOP/s",
              "bf16 ms", "GFLOP/s", "speedup");
  double total_flop = 0.0, total_ms[2] = {0.0, 0.0}, bf16_total_ms[2] = {0.0, 0.0};
  std::string shapes_json;
  for (size_t li = 0; li < layers.size(); ++li) {
    const Layer& L = layers[li];
    const double fwd_flop = 2.0 * kBatch * L.in * L.out, bwd_flop = 2.0 * fwd_flop;
    const std::string shape = std::to_string(L.in) + "x" + std::to_string(L.out);
    char buf[1024];
    const Result& r = results[li];
    for (int t = 0; t < 2; ++t) {
      std::printf("%-6s %-12s %-4s %7d %9.3f %9.1f %9.3f %9.1f %7.2f\n", L.name.c_str(), shape.c_str(), "fwd",
                  thread_counts[t], r.fwd_ms[t], fwd_flop / (r.fwd_ms[t] * 1e6), r.bf16_fwd_ms[t],
                  fwd_flop / (r.bf16_fwd_ms[t] * 1e6), r.fwd_ms[t] / r.bf16_fwd_ms[t]);
      std::printf("%-6s %-12s %-4s %7d %9.3f %9.1f %9.3f %9.1f %7.2f\n", L.name.c_str(), shape.c_str(), "bwd",
                  thread_counts[t], r.bwd_ms[t], bwd_flop / (r.bwd_ms[t] * 1e6), r.bf16_bwd_ms[t],
                  bwd_flop / (r.bf16_bwd_ms[t] * 1e6), r.bwd_ms[t] / r.bf16_bwd_ms[t]);
      total_ms[t] += r.fwd_ms[t] + r.bwd_ms[t];
      bf16_total_ms[t] += r.bf16_fwd_ms[t] + r.bf16_bwd_ms[t];
    }
    total_flop += fwd_flop + bwd_flop;
    std::snprintf(buf, sizeof buf,
                  "%s{\"layer\":\"%s\",\"in\":%lld,\"out\":%lld,\"fwd_gflops_1t\":%.2f,\"bwd_gflops_1t\":%.2f,"
                  "\"fwd_gflops_2t\":%.2f,\"bwd_gflops_2t\":%.2f,\"fwd_ms_1t\":%.4f,\"bwd_ms_1t\":%.4f,"
                  "\"fwd_ms_2t\":%.4f,\"bwd_ms_2t\":%.4f,\"bf16_fwd_gflops_1t\":%.2f,\"bf16_bwd_gflops_1t\":%.2f,"
                  "\"bf16_fwd_gflops_2t\":%.2f,\"bf16_bwd_gflops_2t\":%.2f,\"bf16_fwd_ms_1t\":%.4f,"
                  "\"bf16_bwd_ms_1t\":%.4f,\"bf16_fwd_ms_2t\":%.4f,\"bf16_bwd_ms_2t\":%.4f}",
                  li ? "," : "", L.name.c_str(), static_cast<long long>(L.in), static_cast<long long>(L.out),
                  fwd_flop / (results[li].fwd_ms[0] * 1e6), bwd_flop / (results[li].bwd_ms[0] * 1e6),
                  fwd_flop / (results[li].fwd_ms[1] * 1e6), bwd_flop / (results[li].bwd_ms[1] * 1e6),
                  results[li].fwd_ms[0], results[li].bwd_ms[0], results[li].fwd_ms[1], results[li].bwd_ms[1],
                  fwd_flop / (r.bf16_fwd_ms[0] * 1e6), bwd_flop / (r.bf16_bwd_ms[0] * 1e6),
                  fwd_flop / (r.bf16_fwd_ms[1] * 1e6), bwd_flop / (r.bf16_bwd_ms[1] * 1e6), r.bf16_fwd_ms[0],
                  r.bf16_bwd_ms[0], r.bf16_fwd_ms[1], r.bf16_bwd_ms[1]);
    shapes_json += buf;
  }
  const double g1 = total_flop / (total_ms[0] * 1e6), g2 = total_flop / (total_ms[1] * 1e6);
  const double h1 = total_flop / (bf16_total_ms[0] * 1e6), h2 = total_flop / (bf16_total_ms[1] * 1e6);
  for (int t = 0; t < 2; ++t)
    std::printf("%-6s %-12s %-4s %7d %9.3f %9.1f %9.3f %9.1f %7.2f\n", "total", "all", "f+b", thread_counts[t],
                total_ms[t], t ? g2 : g1, bf16_total_ms[t], t ? h2 : h1, total_ms[t] / bf16_total_ms[t]);
  for (int t = 0; t < 2; ++t)
    std::printf("%-6s %-12s %-4s %7d %9s %9.1f %9s %9.1f %7.2f\n", "gemm", "1024^3", "-", thread_counts[t], "",
                ceiling[t], "", ceiling_bf16[t], ceiling_bf16[t] / ceiling[t]);
  std::printf(
      "{\"bench\":\"gemm\",\"device\":\"cpu\",\"dtype\":\"fp32\",\"compute\":[\"fp32\",\"bf16\"],\"dnnl_isa\":\"%s\","
      "\"batch\":%lld,\"runs\":%d,\"valid\":%s,"
      "\"shapes\":[%s],\"gflops_1t\":%.2f,\"gflops_2t\":%.2f,\"ceiling_sgemm1024_gflops_1t\":%.2f,"
      "\"ceiling_sgemm1024_gflops_2t\":%.2f,\"ratio_1t\":%.3f,\"ratio_2t\":%.3f,"
      "\"bf16_gflops_1t\":%.2f,\"bf16_gflops_2t\":%.2f,\"ceiling_bf16gemm1024_gflops_1t\":%.2f,"
      "\"ceiling_bf16gemm1024_gflops_2t\":%.2f,\"bf16_ratio_1t\":%.3f,\"bf16_ratio_2t\":%.3f,"
      "\"bf16_speedup_1t\":%.3f,\"bf16_speedup_2t\":%.3f}\n",
      isa, static_cast<long long>(kBatch), kRuns, ok ? "true" : "false", shapes_json.c_str(), g1, g2, ceiling[0],
      ceiling[1], g1 / ceiling[0], g2 / ceiling[1], h1, h2, ceiling_bf16[0], ceiling_bf16[1], h1 / ceiling_bf16[0],
      h2 / ceiling_bf16[1], h1 / g1, h2 / g2);
  return ok ? 0 : 1;
}
