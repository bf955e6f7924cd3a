// Every collective of every backend, for every dtype and reduction, with small-integer inputs whose
// results are exact in every dtype, so results are compared for equality (no tolerance) except
// NCCL's average over a world that is not a power of two (see below).
#include <gtest/gtest.h>

#include <cmath>

#include "parallel/process_group.h"
#include "tests/parallel/test_util.h"

namespace rf {
namespace {

using test::kAllDTypes;
using test::make_tensor;
using test::read_tensor;

// Rank r holds base(i) + d(r) with sum_r d(r) == 0: the sum is n * base(i), the average base(i)
// exactly, the maximum base(i) + n - 1; all |x| <= 40, exact in bf16 (8 significant bits).
double base_value(int64_t i) { return static_cast<double>(i % 17) - 8.0; }
double rank_offset(int r, int n) { return 2.0 * r - (n - 1); }

std::vector<double> rank_values(int64_t count, int r, int n) {
  std::vector<double> v(static_cast<size_t>(count));
  for (int64_t i = 0; i < count; ++i) v[static_cast<size_t>(i)] = base_value(i) + rank_offset(r, n);
  return v;
}

double expected_reduce(int64_t i, ReduceOp op, int n) {
  switch (op) {
    case ReduceOp::kSum: return n * base_value(i);
    case ReduceOp::kAvg: return base_value(i);
    case ReduceOp::kMax: return base_value(i) + (n - 1);
  }
  return 0;
}

// NCCL's average multiplies every input by 1/n in the input's type before summing: exact for n a
// power of two; otherwise each of the n inputs carries one rounding of the dtype's epsilon.
double tolerance(const std::string& backend, ReduceOp op, DType t, int n, double ref) {
  bool pow2 = (n & (n - 1)) == 0;
  if (backend != "nccl" || op != ReduceOp::kAvg || pow2 || !is_floating(t)) return 0.0;
  double eps = t == DType::kF32 ? 0x1p-23 : t == DType::kF16 ? 0x1p-10 : 0x1p-7;
  return n * eps * (std::fabs(ref) + n);
}

class Collectives : public ::testing::TestWithParam<std::string> {};

TEST_P(Collectives, AllReduceEveryDtypeAndOp) {
  RF_COMM_OR_SKIP(comm, GetParam());
  const int n = comm->size(), r = comm->rank();
  const int64_t count = 37;
  for (DType dt : kAllDTypes) {
    for (ReduceOp op : {ReduceOp::kSum, ReduceOp::kAvg, ReduceOp::kMax}) {
      SCOPED_TRACE(std::string(dtype_name(dt)) + " " + reduce_op_name(op));
      Tensor t = make_tensor(rank_values(count, r, n), dt, comm->device());
      comm->all_reduce(t, op);
      std::vector<double> got = read_tensor(t);
      for (int64_t i = 0; i < count; ++i) {
        double ref = expected_reduce(i, op, n);
        EXPECT_NEAR(got[i], ref, tolerance(GetParam(), op, dt, n, ref)) << "element " << i;
      }
    }
  }
}

TEST_P(Collectives, AllReduceAsyncSeveralInFlight) {
  RF_COMM_OR_SKIP(comm, GetParam());
  const int n = comm->size(), r = comm->rank();
  for (DType dt : kAllDTypes) {
    SCOPED_TRACE(dtype_name(dt));
    const std::vector<ReduceOp> ops = {ReduceOp::kSum, ReduceOp::kAvg, ReduceOp::kMax};
    std::vector<Tensor> ts;
    std::vector<std::unique_ptr<CommWork>> works;
    for (size_t k = 0; k < ops.size(); ++k) {
      ts.push_back(make_tensor(rank_values(1000 + 7 * static_cast<int64_t>(k), r, n), dt, comm->device()));
      works.push_back(comm->all_reduce_async(ts.back(), ops[k]));
    }
    for (auto& w : works) w->test();
    for (size_t k = ops.size(); k-- > 0;) works[k]->wait();  // completion order is the caller's choice
    for (size_t k = 0; k < ops.size(); ++k) {
      std::vector<double> got = read_tensor(ts[k]);
      for (int64_t i = 0; i < static_cast<int64_t>(got.size()); ++i) {
        double ref = expected_reduce(i, ops[k], n);
        ASSERT_NEAR(got[i], ref, tolerance(GetParam(), ops[k], dt, n, ref)) << reduce_op_name(ops[k]) << " element " << i;
      }
    }
  }
}

TEST_P(Collectives, BroadcastFromLastRank) {
  RF_COMM_OR_SKIP(comm, GetParam());
  const int n = comm->size(), r = comm->rank();
  for (DType dt : kAllDTypes) {
    SCOPED_TRACE(dtype_name(dt));
    std::vector<double> v(29);
    for (size_t i = 0; i < v.size(); ++i) v[i] = base_value(i) + 10.0 * r;
    Tensor t = make_tensor(v, dt, comm->device());
    comm->broadcast(t, n - 1);
    std::vector<double> got = read_tensor(t);
    for (size_t i = 0; i < v.size(); ++i) EXPECT_EQ(got[i], base_value(i) + 10.0 * (n - 1)) << i;
  }
}

TEST_P(Collectives, AllGather) {
  RF_COMM_OR_SKIP(comm, GetParam());
  const int n = comm->size(), r = comm->rank();
  const int64_t m = 5;
  for (DType dt : kAllDTypes) {
    SCOPED_TRACE(dtype_name(dt));
    std::vector<double> v(m);
    for (int64_t k = 0; k < m; ++k) v[k] = 20.0 * r + k;
    Tensor in = make_tensor(v, dt, comm->device());
    Tensor out = Tensor::empty({n, m}, dt, comm->device());
    comm->all_gather(in, out);
    std::vector<double> got = read_tensor(out);
    for (int p = 0; p < n; ++p)
      for (int64_t k = 0; k < m; ++k) EXPECT_EQ(got[p * m + k], 20.0 * p + k) << "from rank " << p;
  }
}

TEST_P(Collectives, AllGatherVDifferentCountsPerRank) {
  RF_COMM_OR_SKIP(comm, GetParam());
  const int n = comm->size(), r = comm->rank();
  for (DType dt : kAllDTypes) {
    SCOPED_TRACE(dtype_name(dt));
    std::vector<double> v(static_cast<size_t>(r) + 1);
    for (size_t k = 0; k < v.size(); ++k) v[k] = 10.0 * r + k;
    std::vector<int64_t> counts;
    Tensor out = comm->all_gather_v(make_tensor(v, dt, comm->device()), &counts);
    std::vector<double> want;
    for (int p = 0; p < n; ++p)
      for (int k = 0; k <= p; ++k) want.push_back(10.0 * p + k);
    EXPECT_EQ(read_tensor(out), want);
    ASSERT_EQ(counts.size(), static_cast<size_t>(n));
    for (int p = 0; p < n; ++p) EXPECT_EQ(counts[p], p + 1);
  }
  // A rank with nothing to send.
  Tensor in = make_tensor(r == 0 ? std::vector<double>{} : std::vector<double>{1.0 * r}, DType::kF32, comm->device());
  Tensor out = comm->all_gather_v(in);
  std::vector<double> want;
  for (int p = 1; p < n; ++p) want.push_back(p);
  EXPECT_EQ(read_tensor(out), want);
}

TEST_P(Collectives, ReduceScatterEveryDtypeAndOp) {
  RF_COMM_OR_SKIP(comm, GetParam());
  const int n = comm->size(), r = comm->rank();
  const int64_t m = 6;
  for (DType dt : kAllDTypes) {
    for (ReduceOp op : {ReduceOp::kSum, ReduceOp::kAvg, ReduceOp::kMax}) {
      SCOPED_TRACE(std::string(dtype_name(dt)) + " " + reduce_op_name(op));
      Tensor in = make_tensor(rank_values(n * m, r, n), dt, comm->device());
      Tensor out = Tensor::empty({m}, dt, comm->device());
      comm->reduce_scatter(in, out, op);
      std::vector<double> got = read_tensor(out);
      for (int64_t k = 0; k < m; ++k) {
        double ref = expected_reduce(r * m + k, op, n);
        EXPECT_NEAR(got[k], ref, tolerance(GetParam(), op, dt, n, ref)) << "element " << k;
      }
    }
  }
}

TEST_P(Collectives, AllToAllV) {
  RF_COMM_OR_SKIP(comm, GetParam());
  const int n = comm->size(), r = comm->rank();
  auto count = [](int src, int dst) { return static_cast<int64_t>((src + 2 * dst) % 3 + 1); };
  for (DType dt : kAllDTypes) {
    SCOPED_TRACE(dtype_name(dt));
    std::vector<double> send, want;
    std::vector<int64_t> sc(n), rc(n);
    for (int p = 0; p < n; ++p) {
      sc[p] = count(r, p);
      rc[p] = count(p, r);
      for (int64_t k = 0; k < sc[p]; ++k) send.push_back(16.0 * r + 4.0 * p + k);
      for (int64_t k = 0; k < rc[p]; ++k) want.push_back(16.0 * p + 4.0 * r + k);
    }
    Tensor out = Tensor::zeros({static_cast<int64_t>(want.size())}, dt, comm->device());
    comm->all_to_all_v(make_tensor(send, dt, comm->device()), sc, out, rc);
    EXPECT_EQ(read_tensor(out), want);
  }
}

TEST_P(Collectives, Barrier) {
  RF_COMM_OR_SKIP(comm, GetParam());
  for (int i = 0; i < 3; ++i) comm->barrier();
}

TEST_P(Collectives, MismatchedShapesThrowBeforeCommunicating) {
  RF_COMM_OR_SKIP(comm, GetParam());
  Tensor in = Tensor::zeros({3}, DType::kF32, comm->device());
  Tensor out = Tensor::zeros({3 * comm->size() + 1}, DType::kF32, comm->device());
  EXPECT_THROW(comm->all_gather(in, out), Error);
  Tensor wrong_type = Tensor::zeros({3 * comm->size()}, DType::kI32, comm->device());
  EXPECT_THROW(comm->all_gather(in, wrong_type), Error);
  Tensor host = Tensor::zeros({3}, DType::kF32);
  if (!comm->device().is_cpu()) {
    EXPECT_THROW(comm->all_reduce(host, ReduceOp::kSum), Error);
  }
}

INSTANTIATE_TEST_SUITE_P(Backends, Collectives, ::testing::Values("mpi", "nccl"),
                         [](const auto& info) { return info.param; });

TEST(ProcessGroup, LayoutIsConsistent) {
  ProcessGroup& pg = ProcessGroup::get();
  EXPECT_GE(pg.rank(), 0);
  EXPECT_LT(pg.rank(), pg.world_size());
  EXPECT_GE(pg.local_rank(), 0);
  EXPECT_LT(pg.local_rank(), pg.local_size());
  EXPECT_LE(pg.local_size(), pg.world_size());
  EXPECT_FALSE(pg.host().empty());
  int sum_local = 0, one = 1;
  MPI_Allreduce(&one, &sum_local, 1, MPI_INT, MPI_SUM, pg.node());
  EXPECT_EQ(sum_local, pg.local_size());
  EXPECT_EQ(pg.cuda_device() >= 0, cuda_device_count() > 0);
}

TEST(ProcessGroup, GridSplitsIntoDataAndTensorParallelGroups) {
  ProcessGroup& pg = ProcessGroup::get();
  const int n = pg.world_size(), r = pg.rank();
  for (int tp = 1; tp <= n; ++tp) {
    if (n % tp != 0) {
      EXPECT_THROW(pg.make_grid(tp), ConfigError);
      continue;
    }
    SCOPED_TRACE("tensor_parallel " + std::to_string(tp));
    ParallelGrid g = pg.make_grid(tp);
    EXPECT_EQ(g.tp_size * g.dp_size, n);
    MpiCommunicator tpc(g.tensor_parallel), dpc(g.data_parallel);
    EXPECT_EQ(tpc.size(), tp);
    EXPECT_EQ(dpc.size(), n / tp);
    EXPECT_EQ(tpc.rank(), g.tp_rank);
    EXPECT_EQ(dpc.rank(), g.dp_rank);
    // Sum of world ranks over each group: a tp group is the consecutive block of its dp_rank, a dp
    // group every rank with the same tp_rank.
    Tensor t = Tensor::from_vector<int64_t>({r}, {1});
    tpc.all_reduce(t, ReduceOp::kSum);
    int64_t want_tp = 0;
    for (int k = 0; k < tp; ++k) want_tp += g.dp_rank * tp + k;
    EXPECT_EQ(t.data<int64_t>()[0], want_tp);
    Tensor d = Tensor::from_vector<int64_t>({r}, {1});
    dpc.all_reduce(d, ReduceOp::kSum);
    int64_t want_dp = 0;
    for (int k = 0; k < n / tp; ++k) want_dp += k * tp + g.tp_rank;
    EXPECT_EQ(d.data<int64_t>()[0], want_dp);
  }
  EXPECT_THROW(pg.make_grid(0), ConfigError);
}

TEST(ProcessGroup, GlobalBatchMustDivide) {
  EXPECT_EQ(per_rank_batch(2048, 4), 512);
  try {
    per_rank_batch(1000, 3);
    FAIL() << "expected ConfigError";
  } catch (const ConfigError& e) {
    EXPECT_NE(std::string(e.what()).find("1000"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("3"), std::string::npos) << e.what();
  }
}

}  // namespace
}  // namespace rf
