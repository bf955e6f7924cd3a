// Fused CUDA optimizers against host references written from src/optim/optimizer.h's formulas, and the
// dynamic loss scaler: its policy (runs anywhere), the CPU overflow check, and the device check with a
// planted inf/NaN (skips without a GPU).
#include <gtest/gtest.h>

#include <cmath>

#include "kernels/cast.h"
#include "kernels/cuda/cuda_ops.h"
#include "kernels/embedding_bag.h"
#include "kernels/loss_scaler.h"
#include "kernels/optim_fused.h"
#include "tests/kernels/cuda_test_util.h"

namespace rf::test {
namespace {

// ---- loss scaler policy (no GPU needed) ------------------------------------------------------------------

TEST(LossScaler, BacksOffSkipsAndGrows) {
  LossScalerConfig cfg;
  cfg.init_scale = 1024.0f;
  cfg.growth_interval = 3;
  DynamicLossScaler s(cfg);
  EXPECT_FALSE(s.update(true));  // overflow: skip, halve
  EXPECT_EQ(s.scale(), 512.0f);
  EXPECT_EQ(s.skipped_steps(), 1);
  EXPECT_TRUE(s.update(false));
  EXPECT_TRUE(s.update(false));
  EXPECT_EQ(s.scale(), 512.0f);
  EXPECT_TRUE(s.update(false));  // third good step in a row: grow
  EXPECT_EQ(s.scale(), 1024.0f);
  EXPECT_TRUE(s.update(false));
  EXPECT_FALSE(s.update(true));  // an overflow resets the run of good steps
  EXPECT_EQ(s.good_steps_in_a_row(), 0);
  EXPECT_EQ(s.scale(), 512.0f);
  for (int i = 0; i < 40; ++i) s.update(true);
  EXPECT_EQ(s.scale(), cfg.min_scale);
  DynamicLossScaler off(cfg, /*enabled=*/false);
  EXPECT_EQ(off.scale(), 1.0f);
  EXPECT_TRUE(off.update(false));
  EXPECT_EQ(off.scale(), 1.0f);
}

TEST(LossScaler, CpuUnscalesAndFindsPlantedOverflow) {
  Tensor g = Tensor::from_vector(std::vector<float>{2.0f, -4.0f, 8.0f}, {3});
  Tensor h = Tensor::from_vector(std::vector<float>{1.0f, 1.0f}, {2});
  DynamicLossScaler s(LossScalerConfig{.init_scale = 2.0f});
  EXPECT_TRUE(s.unscale_and_update({&g, &h}));
  EXPECT_EQ(g.to_vector<float>(), (std::vector<float>{1.0f, -2.0f, 4.0f}));
  h.data<float>()[1] = INFINITY;
  EXPECT_FALSE(s.unscale_and_update({&g, &h}));
  EXPECT_EQ(s.scale(), 1.0f);
}

TEST(LossScaler, DeviceFindsPlantedOverflowInEveryDtype) {
  RF_REQUIRE_GPU();
  for (DType dt : {DType::kF32, DType::kBF16, DType::kF16})
    for (float planted : {INFINITY, -INFINITY, NAN}) {
      SCOPED_TRACE(::testing::Message() << dtype_name(dt) << " planted " << planted);
      Rng rng(11);
      const int64_t n = 300001;
      Tensor a32 = rounded_f32(rng, {n}, dt, 0.5, 4.0), b32 = rounded_f32(rng, {1000}, dt, 0.5, 4.0);
      Tensor a = Tensor::empty({n}, dt), b = Tensor::empty({1000}, dt);
      cast(a32, a);
      cast(b32, b);
      Tensor da = dev(a), db = dev(b);
      DynamicLossScaler s(LossScalerConfig{.init_scale = 4.0f, .growth_interval = 2});
      EXPECT_TRUE(s.unscale_and_update({&da, &db}));
      // Unscaled by 1/4, exact in every dtype (a power of two, values far from the subnormals).
      std::vector<double> want = values(a);
      for (double& v : want) v *= 0.25;
      EXPECT_TRUE(close(host(da), want, {0.0, 0.0}, "unscaled"));
      // Plant one bad element deep inside the big tensor.
      Tensor one = Tensor::empty({1}, dt);
      Tensor one32 = Tensor::from_vector(std::vector<float>{planted}, {1});
      cast(one32, one);
      copy_bytes(static_cast<char*>(da.raw()) + 123457 * dtype_size(dt), kDev, one.raw(), Device::cpu(),
                 dtype_size(dt));
      EXPECT_FALSE(s.unscale_and_update({&db, &da}));
      EXPECT_EQ(s.scale(), 2.0f);
      EXPECT_EQ(s.skipped_steps(), 1);
    }
}

// ---- sparse optimizers ----------------------------------------------------------------------------------

// Host row-wise Adagrad as src/optim's RowwiseAdagrad (fp32 rows; results rounded to the table type).
void rowwise_adagrad_host(std::vector<float>& w, std::vector<float>& acc, const std::vector<int64_t>& rows,
                          const std::vector<float>& g, int64_t dim, const RowwiseAdagradArgs& a) {
  for (size_t k = 0; k < rows.size(); ++k) {
    float* wr = w.data() + rows[k] * dim;
    const float* gr = g.data() + k * dim;
    float sum_sq = 0.0f;
    for (int64_t d = 0; d < dim; ++d) {
      const float gx = a.weight_decay != 0.0f ? gr[d] + a.weight_decay * wr[d] : gr[d];
      sum_sq += gx * gx;
    }
    const float new_acc = acc[rows[k]] + sum_sq / static_cast<float>(dim);
    acc[rows[k]] = new_acc;
    const float m = a.lr / (std::sqrt(new_acc) + a.eps);
    const float corr = a.weight_decay != 0.0f ? 1.0f - m * a.weight_decay : 1.0f;
    for (int64_t d = 0; d < dim; ++d) wr[d] = corr * wr[d] - m * gr[d];
  }
}

TEST(CudaSparseOptim, FusedAndUnfusedMatchHostReference) {
  RF_REQUIRE_GPU();
  const int default_narrowing = cuda::sparse_update_narrowing();
  uint64_t seed = 8000;
  struct C {
    int64_t batch, rows, dim, max_len;
  };
  // dim 600 exceeds the four register-cached pieces of a 32-lane group (512 fp32): the recompute path.
  for (C c : {C{64, 200, 16, 6}, C{40, 7, 13, 9}, C{32, 100, 128, 4}, C{16, 50, 600, 3}})
    for (DType dt : {DType::kF32, DType::kBF16, DType::kF16})
      for (float wd : {0.0f, 0.01f}) {
        // Half of the cases with the lanes per row not narrowed (cuda::set_sparse_update_narrowing).
        const int narrowing = seed % 2 == 0 ? 1 : 2;
        SCOPED_TRACE(::testing::Message() << "rows " << c.rows << " dim " << c.dim << " " << dtype_name(dt) << " wd "
                                          << wd << " narrowing " << narrowing);
        cuda::set_sparse_update_narrowing(narrowing);
        Rng rng(seed++);
        Tensor table32 = rounded_f32(rng, {c.rows, c.dim}, dt);
        Tensor table = Tensor::empty(table32.shape(), dt);
        cast(table32, table);
        Bags b = random_bags(rng, c.batch, c.rows, c.max_len);
        Tensor idx = i64(b.indices), off = i64(b.offsets);
        Tensor go = rounded_f32(rng, {c.batch, c.dim}, DType::kF32);
        SparseGrad ref_grad = embedding_bag_backward(idx, off, go, PoolMode::kMean, c.rows);
        const std::vector<int64_t> rows = ref_grad.rows.to_vector<int64_t>();
        const std::vector<float> gv = ref_grad.values.to_vector<float>();
        Tensor acc0 = rounded_f32(rng, {c.rows}, DType::kF32, 0.0, 2.0);
        const RowwiseAdagradArgs args{0.05f, 1e-8f, wd};

        // Host reference on the table's values (fp32), rounded to the table type at the end.
        // values() returns a fresh vector: take it once (begin and end of two temporaries would mix).
        const auto table_values = values(table);
        std::vector<float> w_ref(table_values.begin(), table_values.end()), acc_ref = acc0.to_vector<float>();
        rowwise_adagrad_host(w_ref, acc_ref, rows, gv, c.dim, args);
        Tensor w_ref_t = Tensor::empty(table.shape(), dt);
        cast(Tensor::from_vector(w_ref, table.shape()), w_ref_t);
        // 16-bit tables: one rounding of the stored row on each side, possibly one ulp apart; fp32:
        // the same formula, the GPU may contract g + wd * w into an FMA and sums in another order.
        const Tol tol = dt == DType::kF32 ? Tol{1e-6, 1e-5} : dt == DType::kBF16 ? Tol{1e-6, 1.6e-2} : Tol{1e-6, 2e-3};

        Tensor t1 = dev(table), a1 = dev(acc0);
        SparseGrad dg = embedding_bag_backward(dev(idx), dev(off), dev(go), PoolMode::kMean, c.rows);
        sparse_rowwise_adagrad_update(t1, a1, dg, args);
        EXPECT_TRUE(close(host(t1), values(w_ref_t), tol, "unfused table"));
        EXPECT_TRUE(close(host(a1), to_double(acc_ref), {1e-6, 1e-5}, "unfused acc"));

        Tensor t2 = dev(table), a2 = dev(acc0);
        embedding_bag_backward_rowwise_adagrad(dev(idx), dev(off), dev(go), PoolMode::kMean, t2, a2, args);
        // Same arithmetic in the same order, but two kernels may contract differently into FMAs.
        EXPECT_TRUE(close(host(t2), values(host(t1)), tol, "fused vs unfused table"));
        EXPECT_TRUE(close(host(a2), values(host(a1)), {1e-6, 1e-5}, "fused vs unfused acc"));

        // SGD: w += -lr g on touched rows only.
        std::vector<float> ws(table_values.begin(), table_values.end());
        for (size_t k = 0; k < rows.size(); ++k)
          for (int64_t d = 0; d < c.dim; ++d) ws[rows[k] * c.dim + d] = std::fma(-0.1f, gv[k * c.dim + d], ws[rows[k] * c.dim + d]);
        Tensor ws_t = Tensor::empty(table.shape(), dt);
        cast(Tensor::from_vector(ws, table.shape()), ws_t);
        Tensor t3 = dev(table);
        embedding_bag_backward_sgd(dev(idx), dev(off), dev(go), PoolMode::kMean, t3, 0.1f);
        EXPECT_TRUE(close(host(t3), values(ws_t), tol, "fused sgd"));
        Tensor t4 = dev(table);
        sparse_sgd_update(t4, dg, 0.1f);
        EXPECT_TRUE(close(host(t4), values(host(t3)), tol, "unfused vs fused sgd"));
      }
  cuda::set_sparse_update_narrowing(default_narrowing);
}

// A bad index or bad offsets in the fused backward + update: a DataError naming the table, and not a
// byte of any table or accumulator written (validation runs before the update kernels). The decreasing
// offsets make two bags of table 1 cover all its 8 lookups, so each of its 8 rows counts twice: more than
// the 4 multi rows the hashed path sizes for 8 lookups, which its insert pass must not write past.
TEST(CudaSparseOptim, FusedUpdateRejectsBadIndexOrOffsetsBeforeWriting) {
  RF_REQUIRE_GPU();
  const int64_t T = 3, rows = 10, dim = 8, batch = 4;
  struct Case {
    std::vector<std::vector<int64_t>> idx, off;
    std::string error;
  };
  const std::vector<Case> cases = {
      {{{1, 2, 3, 4}, {1, 2, 3, rows}, {1, 2, 3, 4}},
       {{0, 1, 2, 3, 4}, {0, 1, 2, 3, 4}, {0, 1, 2, 3, 4}},
       "(table 1): bag 3 holds index 10"},
      {{{1}, {0, 1, 2, 3, 4, 5, 6, 7}, {1}},
       {{0, 0, 0, 0, 1}, {0, 8, 0, 8, 8}, {0, 0, 0, 0, 1}},
       "(table 1): offsets decrease at bag 1 (8 then 0)"},
  };
  Rng rng(31);
  for (const Case& k : cases) {
    std::vector<Tensor> idx, off, w, acc;
    for (int64_t t = 0; t < T; ++t) {
      idx.push_back(dev(i64(k.idx[static_cast<size_t>(t)])));
      off.push_back(dev(i64(k.off[static_cast<size_t>(t)])));
      w.push_back(dev(rounded_f32(rng, {rows, dim}, DType::kF32)));
      acc.push_back(dev(rounded_f32(rng, {rows}, DType::kF32, 0.0, 2.0)));
    }
    const std::vector<Tensor*> wp = pointers(w), ap = pointers(acc);
    std::vector<std::vector<uint8_t>> w0, a0;
    for (int64_t t = 0; t < T; ++t) {
      w0.push_back(raw_bytes(host(w[static_cast<size_t>(t)])));
      a0.push_back(raw_bytes(host(acc[static_cast<size_t>(t)])));
    }
    Tensor go = dev(random_tensor(rng, {batch, T * dim}, DType::kF32, nullptr));
    for (int opt = 0; opt < 4; ++opt) {  // SGD, row-wise Adagrad; sorted, then hashed
      cuda::set_deterministic_embedding_update(opt < 2);
      try {
        if (opt % 2 == 0) embedding_bags_backward_sgd(idx, off, go, PoolMode::kSum, wp, 0.1f);
        else embedding_bags_backward_rowwise_adagrad(idx, off, go, PoolMode::kSum, wp, ap, RowwiseAdagradArgs{});
        ADD_FAILURE() << "expected DataError (case " << opt << ", " << k.error << ")";
      } catch (const DataError& e) {
        EXPECT_NE(std::string(e.what()).find(k.error), std::string::npos) << e.what();
      }
    }
    cuda::set_deterministic_embedding_update(true);
    for (int64_t t = 0; t < T; ++t) {
      EXPECT_TRUE(raw_bytes(host(w[static_cast<size_t>(t)])) == w0[static_cast<size_t>(t)])
          << k.error << ": table " << t << " written";
      EXPECT_TRUE(raw_bytes(host(acc[static_cast<size_t>(t)])) == a0[static_cast<size_t>(t)])
          << k.error << ": acc " << t << " written";
    }
  }
}

// ---- dense multi-tensor -----------------------------------------------------------------------------------

// The fused update of many tables (one sort, one update launch per 32 tables) against the unfused path
// the model takes without it (embedding_bags_backward, then each table's SparseGrad update, both checked
// against host references above): same sums in the same order, so bit-identical tables and accumulators.
TEST(CudaSparseOptim, ManyTablesFusedEqualsBackwardThenUpdate) {
  RF_REQUIRE_GPU();
  const int default_narrowing = cuda::sparse_update_narrowing();
  const bool default_checks = cuda::embedding_bounds_checks();
  uint64_t seed = 900;
  for (int64_t T : {int64_t{5}, int64_t{37}})
    for (DType dt : {DType::kF32, DType::kBF16})
      for (PoolMode mode : {PoolMode::kSum, PoolMode::kMean})
        for (int opt = 0; opt < 3; ++opt) {  // SGD, row-wise Adagrad, row-wise Adagrad with weight decay
          SCOPED_TRACE(::testing::Message() << T << " tables " << dtype_name(dt)
                                            << (mode == PoolMode::kSum ? " sum" : " mean") << " optimizer " << opt);
          Rng rng(seed++);
          const int64_t batch = 29, dim = 8;
          std::vector<Tensor> idx, off;
          std::vector<Tensor> fused_w, plain_w, fused_acc, plain_acc;
          std::vector<int64_t> rows;
          for (int64_t t = 0; t < T; ++t) {
            rows.push_back(3 + (t * 13) % 60);
            Bags b = random_bags(rng, batch, rows.back(), t % 7 == 3 ? 0 : 1 + t % 3);  // some tables unused
            idx.push_back(dev(i64(b.indices)));
            off.push_back(dev(i64(b.offsets)));
            Tensor w32 = rounded_f32(rng, {rows.back(), dim}, dt), w = Tensor::empty({rows.back(), dim}, dt);
            cast(w32, w);
            fused_w.push_back(dev(w));
            plain_w.push_back(dev(w));
            Tensor a = rounded_f32(rng, {rows.back()}, DType::kF32, 0.0, 2.0);
            fused_acc.push_back(dev(a));
            plain_acc.push_back(dev(a));
          }
          Tensor go = dev(random_tensor(rng, {batch, T * dim}, DType::kF32, nullptr));
          RowwiseAdagradArgs args;
          args.lr = 0.07f;
          args.weight_decay = opt == 2 ? 0.01f : 0.0f;
          const std::vector<Tensor*> fw = pointers(fused_w), fa = pointers(fused_acc);
          // Bounds checks on: the sort synchronises (validation) and the update launches know their row
          // counts; off: no synchronisation, the update kernels read the counts on the device. Both
          // against the same unfused result.
          const bool checks = seed % 2 == 0;
          const int narrowing = seed / 2 % 2 == 0 ? 1 : 2;  // both paths with the same lanes per row
          // The learning rate by value, or read from device memory (a CUDA graph's per-step scalar) with a
          // wrong by-value rate beside it that must go unused.
          const bool lr_on_device = seed / 4 % 2 == 0;
          SCOPED_TRACE(::testing::Message() << (checks ? "bounds checks on" : "bounds checks off") << ", narrowing "
                                            << narrowing << (lr_on_device ? ", lr on the device" : ""));
          cuda::set_embedding_bounds_checks(checks);
          cuda::set_sparse_update_narrowing(narrowing);
          const Tensor lr_dev = dev(Tensor::from_vector<float>({args.lr}, {1}));
          RowwiseAdagradArgs fused_args = args;
          if (lr_on_device) {
            fused_args.lr = 123.0f;
            fused_args.device_lr = lr_dev.data<float>();
          }
          if (opt == 0) embedding_bags_backward_sgd(idx, off, go, mode, fw, fused_args.lr, fused_args.device_lr);
          else embedding_bags_backward_rowwise_adagrad(idx, off, go, mode, fw, fa, fused_args);
          cuda::set_embedding_bounds_checks(default_checks);
          std::vector<SparseGrad> grads = embedding_bags_backward(idx, off, go, mode, rows);
          for (int64_t t = 0; t < T; ++t) {
            const SparseGrad& g = grads[static_cast<size_t>(t)];
            if (g.rows.numel() == 0) continue;
            if (opt == 0) sparse_sgd_update(plain_w[static_cast<size_t>(t)], g, args.lr);
            else sparse_rowwise_adagrad_update(plain_w[static_cast<size_t>(t)], plain_acc[static_cast<size_t>(t)], g, args);
          }
          cuda::set_sparse_update_narrowing(default_narrowing);
          for (int64_t t = 0; t < T; ++t) {
            SCOPED_TRACE(::testing::Message() << "table " << t);
            EXPECT_TRUE(raw_bytes(host(fused_w[static_cast<size_t>(t)])) == raw_bytes(host(plain_w[static_cast<size_t>(t)])))
                << "weights differ";
            EXPECT_TRUE(raw_bytes(host(fused_acc[static_cast<size_t>(t)])) == raw_bytes(host(plain_acc[static_cast<size_t>(t)])))
                << "accumulators differ";
          }
        }
}

// The hashed fused update (cuda::set_deterministic_embedding_update(false)) against the sorted one on the
// same inputs: rows looked up once get the same arithmetic; rows looked up more often sum their gradients
// with float atomics in another order. Hot rows (a few rows, many lookups each: nearly every row summed
// by atomics) and spread rows (mostly single lookups), aligned and unaligned rows, rows held in one, two
// and four pieces per lane, 1, 5 and 26 tables. Rows longer than the hashed kernel takes (600) fall back
// to the sorted path: bit-identical there.
TEST(CudaSparseOptim, HashedFusedUpdateFollowsTheSortedOne) {
  RF_REQUIRE_GPU();
  const bool default_checks = cuda::embedding_bounds_checks();
  uint64_t seed = 4400;
  struct C {
    int64_t tables, dim, rows, max_len;
  };
  for (C c : {C{1, 8, 7, 12}, C{1, 13, 400, 3}, C{5, 64, 5, 6}, C{5, 128, 3000, 4}, C{26, 16, 40, 2},
              C{3, 200, 30, 5}, C{2, 600, 20, 3}})
    for (DType dt : {DType::kF32, DType::kBF16})
      for (PoolMode mode : {PoolMode::kSum, PoolMode::kMean})
        for (int opt = 0; opt < 3; ++opt) {  // SGD, row-wise Adagrad, row-wise Adagrad with weight decay
          SCOPED_TRACE(::testing::Message() << c.tables << " tables dim " << c.dim << " rows " << c.rows << " "
                                            << dtype_name(dt) << (mode == PoolMode::kSum ? " sum" : " mean")
                                            << " optimizer " << opt);
          Rng rng(seed++);
          const int64_t batch = 37;
          std::vector<Tensor> idx, off, w[2], acc[2];
          for (int64_t t = 0; t < c.tables; ++t) {
            Bags b = random_bags(rng, batch, c.rows, c.max_len);
            idx.push_back(dev(i64(b.indices)));
            off.push_back(dev(i64(b.offsets)));
            Tensor w32 = rounded_f32(rng, {c.rows, c.dim}, dt), wt = Tensor::empty({c.rows, c.dim}, dt);
            cast(w32, wt);
            Tensor a = rounded_f32(rng, {c.rows}, DType::kF32, 0.0, 2.0);
            for (int k = 0; k < 2; ++k) {
              w[k].push_back(dev(wt));
              acc[k].push_back(dev(a));
            }
          }
          Tensor go = dev(random_tensor(rng, {batch, c.tables * c.dim}, DType::kF32, nullptr));
          RowwiseAdagradArgs args;
          args.lr = 0.07f;
          args.weight_decay = opt == 2 ? 0.01f : 0.0f;
          const bool checks = seed % 2 == 0;
          cuda::set_embedding_bounds_checks(checks);
          for (int k = 0; k < 2; ++k) {  // 0: sorted, 1: hashed
            const std::vector<Tensor*> wp = pointers(w[k]), ap = pointers(acc[k]);
            cuda::set_deterministic_embedding_update(k == 0);
            if (opt == 0) embedding_bags_backward_sgd(idx, off, go, mode, wp, args.lr);
            else embedding_bags_backward_rowwise_adagrad(idx, off, go, mode, wp, ap, args);
          }
          cuda::set_deterministic_embedding_update(true);
          cuda::set_embedding_bounds_checks(default_checks);
          // fp32: a gradient sum of up to ~20 terms in [-1, 1) in another order, a few ulps of the sum's
          // terms, scaled by lr / sqrt(acc) < 0.1 into the row. 16-bit tables: that can move the one
          // rounding of the stored row by an ulp (2^-8 relative for bf16).
          const Tol tol = dt == DType::kF32 ? Tol{1e-5, 1e-5} : Tol{1e-5, 1.6e-2};
          for (int64_t t = 0; t < c.tables; ++t) {
            SCOPED_TRACE(::testing::Message() << "table " << t);
            const Tensor hw = host(w[1][static_cast<size_t>(t)]), sw = host(w[0][static_cast<size_t>(t)]);
            if (c.dim == 600) {
              EXPECT_TRUE(raw_bytes(hw) == raw_bytes(sw)) << "rows too long for the hashed path: sorted path expected";
              continue;
            }
            EXPECT_TRUE(close(hw, values(sw), tol, "weights"));
            EXPECT_TRUE(close(host(acc[1][static_cast<size_t>(t)]), values(host(acc[0][static_cast<size_t>(t)])),
                              {1e-5, 1e-5}, "accumulators"));
          }
        }
}

TEST(CudaDenseOptim, MultiTensorAdamAndAdagradMatchHostReference) {
  RF_REQUIRE_GPU();
  Rng rng(9000);
  // 60 tensors: more than one launch's 48, sizes from 1 to a few chunks.
  std::vector<Tensor> w, g, m, v, host_w, host_g, host_m, host_v;
  for (int i = 0; i < 60; ++i) {
    const int64_t n = 1 + rng.integer(0, i % 7 == 0 ? 5000 : 300);
    host_w.push_back(rounded_f32(rng, {n}, DType::kF32));
    host_g.push_back(rounded_f32(rng, {n}, DType::kF32));
    host_m.push_back(rounded_f32(rng, {n}, DType::kF32, -0.1, 0.1));
    host_v.push_back(rounded_f32(rng, {n}, DType::kF32, 0.0, 0.1));
  }
  for (bool decoupled : {false, true}) {
    SCOPED_TRACE(decoupled ? "adamw" : "adam");
    w.clear(); g.clear(); m.clear(); v.clear();
    for (size_t i = 0; i < host_w.size(); ++i) {
      w.push_back(dev(host_w[i]));
      g.push_back(dev(host_g[i]));
      m.push_back(dev(host_m[i]));
      v.push_back(dev(host_v[i]));
    }
    const std::vector<Tensor*> pw = pointers(w), pm = pointers(m), pv = pointers(v);
    const std::vector<const Tensor*> pg = const_pointers(g);
    AdamArgs a;
    a.lr = 0.01f;
    a.weight_decay = 0.01;
    a.decoupled = decoupled;
    a.step = 4;
    a.grad_scale = 0.5f;
    fused_adam_step(pw, pg, pm, pv, a);
    // Host: src/optim's Adam on grad * grad_scale.
    const double t = 5.0;
    const float neg_step = static_cast<float>(-(0.01 / (1.0 - std::pow(0.9, t))));
    const float bc2 = static_cast<float>(std::sqrt(1.0 - std::pow(0.999, t)));
    const float decay = static_cast<float>(1.0 - static_cast<double>(a.lr) * 0.01);
    for (size_t i = 0; i < w.size(); ++i) {
      std::vector<double> want_w, want_m, want_v;
      for (int64_t k = 0; k < host_w[i].numel(); ++k) {
        float wi = host_w[i].data<float>()[k], gi = host_g[i].data<float>()[k] * 0.5f;
        if (!decoupled) gi = std::fma(0.01f, wi, gi);
        else wi = wi * decay;
        const float mi = std::fma(0.1f, gi, host_m[i].data<float>()[k] * 0.9f);
        const float vi = std::fma(static_cast<float>(1.0 - 0.999) * gi, gi, host_v[i].data<float>()[k] * 0.999f);
        want_m.push_back(mi);
        want_v.push_back(vi);
        want_w.push_back(wi + (neg_step * mi) / (std::sqrt(vi) / bc2 + 1e-8f));
      }
      // Same fp32 operations with the same FMAs: equal up to sqrt/div rounding (both IEEE) — allow an ulp.
      ASSERT_TRUE(close(host(w[i]), want_w, {1e-7, 1e-6}, "w " + std::to_string(i)));
      ASSERT_TRUE(close(host(m[i]), want_m, {1e-9, 1e-6}, "m " + std::to_string(i)));
      ASSERT_TRUE(close(host(v[i]), want_v, {1e-9, 1e-6}, "v " + std::to_string(i)));
    }
  }
  // Adagrad over the same tensors (m reused as the sum state, made non-negative).
  std::vector<Tensor> sums;
  w.clear();
  for (size_t i = 0; i < host_w.size(); ++i) {
    w.push_back(dev(host_w[i]));
    sums.push_back(dev(host_v[i]));
  }
  const std::vector<Tensor*> pw = pointers(w), ps = pointers(sums);
  const std::vector<const Tensor*> pg = const_pointers(g);
  AdagradArgs ag;
  ag.lr = 0.05f;
  ag.weight_decay = 0.001;
  ag.lr_decay = 0.01;
  ag.step = 3;
  fused_adagrad_step(pw, pg, ps, ag);
  const float clr_neg = static_cast<float>(-(0.05 / (1.0 + 3.0 * 0.01)));
  for (size_t i = 0; i < w.size(); ++i) {
    std::vector<double> want_w, want_s;
    for (int64_t k = 0; k < host_w[i].numel(); ++k) {
      const float wi = host_w[i].data<float>()[k];
      const float gi = std::fma(0.001f, wi, host_g[i].data<float>()[k]);
      const float s = std::fma(gi, gi, host_v[i].data<float>()[k]);
      want_s.push_back(s);
      want_w.push_back(wi + (clr_neg * gi) / (std::sqrt(s) + 1e-10f));
    }
    ASSERT_TRUE(close(host(w[i]), want_w, {1e-7, 1e-6}, "adagrad w " + std::to_string(i)));
    ASSERT_TRUE(close(host(sums[i]), want_s, {1e-9, 1e-6}, "adagrad sum " + std::to_string(i)));
  }
}

// A CUDA graph's launches read the per-step scalars from device memory (step_scalars of the step's args):
// the same fp32 values, so the same bits as the by-value launch. The device launch's own lr and step are
// wrong on purpose: they must go unused.
TEST(CudaDenseOptim, DeviceScalarsGiveTheByValueBits) {
  RF_REQUIRE_GPU();
  Rng rng(9100);
  std::vector<Tensor> host_w, host_g, host_m, host_v;
  for (int i = 0; i < 7; ++i) {
    const int64_t n = 1 + rng.integer(0, 3000);
    host_w.push_back(rounded_f32(rng, {n}, DType::kF32));
    host_g.push_back(rounded_f32(rng, {n}, DType::kF32));
    host_m.push_back(rounded_f32(rng, {n}, DType::kF32, -0.1, 0.1));
    host_v.push_back(rounded_f32(rng, {n}, DType::kF32, 0.0, 0.1));
  }
  struct State {
    std::vector<Tensor> w, g, m, v;
    std::vector<Tensor*> pw, pm, pv;
    std::vector<const Tensor*> pg;
  };
  auto fresh = [&]() {
    State st;
    for (size_t i = 0; i < host_w.size(); ++i) {
      st.w.push_back(dev(host_w[i]));
      st.g.push_back(dev(host_g[i]));
      st.m.push_back(dev(host_m[i]));
      st.v.push_back(dev(host_v[i]));
    }
    st.pw = pointers(st.w);
    st.pg = const_pointers(st.g);
    st.pm = pointers(st.m);
    st.pv = pointers(st.v);
    return st;
  };
  auto upload = [](const std::vector<float>& v) { return dev(Tensor::from_vector(v, {static_cast<int64_t>(v.size())})); };
  auto same = [](const State& a, const State& b) {
    for (size_t i = 0; i < a.w.size(); ++i) {
      EXPECT_TRUE(raw_bytes(host(a.w[i])) == raw_bytes(host(b.w[i]))) << "w " << i;
      EXPECT_TRUE(raw_bytes(host(a.m[i])) == raw_bytes(host(b.m[i]))) << "m " << i;
      EXPECT_TRUE(raw_bytes(host(a.v[i])) == raw_bytes(host(b.v[i]))) << "v " << i;
    }
  };
  for (int kind = 0; kind < 4; ++kind) {  // Adam, AdamW, SGD, Adagrad
    SCOPED_TRACE(::testing::Message() << "optimizer " << kind);
    State by_value = fresh(), on_device = fresh();
    Tensor scalars;
    if (kind <= 1) {
      AdamArgs a;
      a.lr = 0.003f;
      a.weight_decay = 0.02;
      a.decoupled = kind == 1;
      a.step = 11;
      fused_adam_step(by_value.pw, by_value.pg, by_value.pm, by_value.pv, a);
      scalars = upload(step_scalars(a));
      a.lr = 7.0f;
      a.step = 0;
      a.device_scalars = scalars.data<float>();
      fused_adam_step(on_device.pw, on_device.pg, on_device.pm, on_device.pv, a);
    } else if (kind == 2) {
      SgdArgs a;
      a.lr = 0.05f;
      a.weight_decay = 0.01;
      fused_sgd_step(by_value.pw, by_value.pg, a);
      scalars = upload(step_scalars(a));
      a.lr = 7.0f;
      a.device_scalars = scalars.data<float>();
      fused_sgd_step(on_device.pw, on_device.pg, a);
    } else {
      AdagradArgs a;
      a.lr = 0.05f;
      a.lr_decay = 0.01;
      a.step = 6;
      fused_adagrad_step(by_value.pw, by_value.pg, by_value.pv, a);
      scalars = upload(step_scalars(a));
      a.lr = 7.0f;
      a.step = 0;
      a.device_scalars = scalars.data<float>();
      fused_adagrad_step(on_device.pw, on_device.pg, on_device.pv, a);
    }
    same(by_value, on_device);
  }
}

}  // namespace
}  // namespace rf::test
