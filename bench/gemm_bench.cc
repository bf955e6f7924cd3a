// GEMM throughput of the CPU linear layer (rf::linear_forward / linear_backward, fp32, OpenBLAS) on
// the DLRM Criteo Kaggle MLP shapes at batch 2048, with 1 and 2 threads, against the ceiling of a
// 1024^3 cblas_sgemm measured in the same run. Each shape is validated once against a naive GEMM
// before it is timed; every figure is the median of several runs after warm-up.
#include <cblas.h>

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

// |fast - ref| <= K * 2^-22 * max|ref| + 1e-5 |ref|: fp32 summation over K terms in any order.
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
  double fwd_ms[2], bwd_ms[2];
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

    for (int t = 0; t < 2; ++t) {
      rf::set_num_threads(thread_counts[t]);
      results[li].fwd_ms[t] = median_ms([&] { rf::linear_forward(x, w, &b, y); });
      results[li].bwd_ms[t] = median_ms([&] { rf::linear_backward(x, w, dy, &dx, dw, &db); });
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

  // Table. Forward: 2 B in out flops; backward: dx and dw, 4 B in out (db's B out adds are not counted).
  std::printf("%-6s %-12s %-4s %7s %9s %9s\n", "layer", "shape", "pass", "threads", "ms", "GFLOP/s");
  double total_flop = 0.0, total_ms[2] = {0.0, 0.0};
  std::string shapes_json;
  for (size_t li = 0; li < layers.size(); ++li) {
    const Layer& L = layers[li];
    const double fwd_flop = 2.0 * kBatch * L.in * L.out, bwd_flop = 2.0 * fwd_flop;
    const std::string shape = std::to_string(L.in) + "x" + std::to_string(L.out);
    char buf[512];
    for (int t = 0; t < 2; ++t) {
      std::printf("%-6s %-12s %-4s %7d %9.3f %9.1f\n", L.name.c_str(), shape.c_str(), "fwd", thread_counts[t],
                  results[li].fwd_ms[t], fwd_flop / (results[li].fwd_ms[t] * 1e6));
      std::printf("%-6s %-12s %-4s %7d %9.3f %9.1f\n", L.name.c_str(), shape.c_str(), "bwd", thread_counts[t],
                  results[li].bwd_ms[t], bwd_flop / (results[li].bwd_ms[t] * 1e6));
      total_ms[t] += results[li].fwd_ms[t] + results[li].bwd_ms[t];
    }
    total_flop += fwd_flop + bwd_flop;
    std::snprintf(buf, sizeof buf,
                  "%s{\"layer\":\"%s\",\"in\":%lld,\"out\":%lld,\"fwd_gflops_1t\":%.2f,\"bwd_gflops_1t\":%.2f,"
                  "\"fwd_gflops_2t\":%.2f,\"bwd_gflops_2t\":%.2f,\"fwd_ms_1t\":%.4f,\"bwd_ms_1t\":%.4f,"
                  "\"fwd_ms_2t\":%.4f,\"bwd_ms_2t\":%.4f}",
                  li ? "," : "", L.name.c_str(), static_cast<long long>(L.in), static_cast<long long>(L.out),
                  fwd_flop / (results[li].fwd_ms[0] * 1e6), bwd_flop / (results[li].bwd_ms[0] * 1e6),
                  fwd_flop / (results[li].fwd_ms[1] * 1e6), bwd_flop / (results[li].bwd_ms[1] * 1e6),
                  results[li].fwd_ms[0], results[li].bwd_ms[0], results[li].fwd_ms[1], results[li].bwd_ms[1]);
    shapes_json += buf;
  }
  const double g1 = total_flop / (total_ms[0] * 1e6), g2 = total_flop / (total_ms[1] * 1e6);
  std::printf("%-6s %-12s %-4s %7d %9.3f %9.1f\n", "total", "all", "f+b", 1, total_ms[0], g1);
  std::printf("%-6s %-12s %-4s %7d %9.3f %9.1f\n", "total", "all", "f+b", 2, total_ms[1], g2);
  std::printf("%-6s %-12s %-4s %7d %9s %9.1f\n", "sgemm", "1024^3", "-", 1, "", ceiling[0]);
  std::printf("%-6s %-12s %-4s %7d %9s %9.1f\n", "sgemm", "1024^3", "-", 2, "", ceiling[1]);
  std::printf(
      "{\"bench\":\"gemm\",\"device\":\"cpu\",\"dtype\":\"fp32\",\"batch\":%lld,\"runs\":%d,\"valid\":%s,"
      "\"shapes\":[%s],\"gflops_1t\":%.2f,\"gflops_2t\":%.2f,\"ceiling_sgemm1024_gflops_1t\":%.2f,"
      "\"ceiling_sgemm1024_gflops_2t\":%.2f,\"ratio_1t\":%.3f,\"ratio_2t\":%.3f}\n",
      static_cast<long long>(kBatch), kRuns, ok ? "true" : "false", shapes_json.c_str(), g1, g2, ceiling[0], ceiling[1],
      g1 / ceiling[0], g2 / ceiling[1]);
  return ok ? 0 : 1;
}
