// `recforge bench comm`: bandwidth of each collective and message size, the nccl-tests way
// (algbw = bytes / time; busbw = algbw * 2(n-1)/n for all-reduce, (n-1)/n for all-gather,
// reduce-scatter and all-to-all), for raw MPI calls, recforge's MpiCommunicator and, where every rank
// has a GPU, the NcclCommunicator, all in the same run. Run it under mpirun with 2+ ranks.
#include <mpi.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <functional>
#include <string>
#include <vector>

#include "parallel/mpi_communicator.h"
#include "parallel/nccl_communicator.h"
#include "parallel/process_group.h"
#include "src/cli/commands.h"
#include "src/config/config.h"
#include "src/core/allocator.h"

namespace rf::cli {
namespace {

enum class Coll { kAllReduce, kAllGather, kReduceScatter, kAllToAll };
const char* coll_name(Coll c) {
  switch (c) {
    case Coll::kAllReduce: return "all_reduce";
    case Coll::kAllGather: return "all_gather";
    case Coll::kReduceScatter: return "reduce_scatter";
    case Coll::kAllToAll: return "all_to_all";
  }
  return "?";
}
double bus_factor(Coll c, int n) {
  if (c == Coll::kAllReduce) return 2.0 * (n - 1) / n;
  return static_cast<double>(n - 1) / n;
}

// Buffers for one size: `bytes` is the nccl-tests size (the all-reduce buffer, the all-gather
// output, the reduce-scatter input, the all-to-all send buffer per rank), fp32 elements.
struct Buffers {
  Tensor big, small, big2;  // big: bytes; small: bytes / n; big2: a second big buffer (all-to-all out)
};

Buffers make_buffers(size_t bytes, int n, Device dev) {
  int64_t count = static_cast<int64_t>(bytes / 4);
  Buffers b;
  b.big = Tensor::zeros({count}, DType::kF32, dev);
  b.small = Tensor::zeros({count / n}, DType::kF32, dev);
  b.big2 = Tensor::zeros({count}, DType::kF32, dev);
  return b;
}

// One collective on `b` through raw MPI calls.
void raw_mpi(Coll c, Buffers& b, MPI_Comm comm, int n) {
  int per = static_cast<int>(b.small.numel());
  float* big = static_cast<float*>(b.big.raw());
  float* small = static_cast<float*>(b.small.raw());
  switch (c) {
    case Coll::kAllReduce: MPI_Allreduce(MPI_IN_PLACE, big, static_cast<int>(b.big.numel()), MPI_FLOAT, MPI_SUM, comm); break;
    case Coll::kAllGather: MPI_Allgather(small, per, MPI_FLOAT, big, per, MPI_FLOAT, comm); break;
    case Coll::kReduceScatter: MPI_Reduce_scatter_block(big, small, per, MPI_FLOAT, MPI_SUM, comm); break;
    case Coll::kAllToAll: MPI_Alltoall(big, per, MPI_FLOAT, b.big2.raw(), per, MPI_FLOAT, comm); break;
  }
}

void via_communicator(Coll c, Buffers& b, Communicator& comm) {
  int n = comm.size();
  switch (c) {
    case Coll::kAllReduce: comm.all_reduce(b.big, ReduceOp::kSum); break;
    case Coll::kAllGather: comm.all_gather(b.small, b.big); break;
    case Coll::kReduceScatter: comm.reduce_scatter(b.big, b.small, ReduceOp::kSum); break;
    case Coll::kAllToAll: {
      std::vector<int64_t> counts(static_cast<size_t>(n), b.small.numel());
      comm.all_to_all_v(b.big, counts, b.big2, counts);
      break;
    }
  }
}

// Checks one collective on ones before timing it: every result element must be n (all-reduce,
// reduce-scatter) or 1 (all-gather, all-to-all).
bool validate(Coll c, const std::function<void(Buffers&)>& op, size_t bytes, int n, Device dev) {
  Buffers b = make_buffers(bytes, n, dev);
  auto ones = [](Tensor& t) {
    std::vector<float> v(static_cast<size_t>(t.numel()), 1.0f);
    t.copy_from(Tensor::from_vector(v, {t.numel()}));
  };
  ones(b.big);
  ones(b.small);
  op(b);
  const Tensor& out = c == Coll::kAllReduce || c == Coll::kAllGather ? b.big
                      : c == Coll::kReduceScatter                  ? b.small
                                                                   : b.big2;
  float want = c == Coll::kAllReduce || c == Coll::kReduceScatter ? static_cast<float>(n) : 1.0f;
  int64_t checked = c == Coll::kAllToAll || c == Coll::kAllGather ? b.small.numel() * n : out.numel();
  std::vector<float> v = out.to_vector<float>();
  for (int64_t i = 0; i < checked; ++i)
    if (v[static_cast<size_t>(i)] != want) return false;
  return true;
}

struct Row {
  std::string coll, backend;
  size_t bytes;
  double us, algbw, busbw;
};

}  // namespace

int run_bench_comm(const Config& cfg) {
  ProcessGroup& pg = ProcessGroup::get();
  const int n = pg.world_size();
  const int64_t steps = cfg.get_int("bench.steps");
  const int64_t warmup = cfg.get_int("bench.warmup");
  MpiCommunicator mpi(pg.world());
  int own_gpu = nccl_available() && pg.local_size() <= cuda_device_count() ? 1 : 0, all_gpu = 0;
  MPI_Allreduce(&own_gpu, &all_gpu, 1, MPI_INT, MPI_MIN, pg.world());
  std::unique_ptr<Communicator> nccl;
  if (all_gpu) nccl = make_nccl_communicator(pg.world(), pg.cuda_device());

  struct Backend {
    std::string name;
    Device dev;
    std::function<void(Coll, Buffers&)> run;
    std::function<void()> sync;  // host waits until the backend's work is complete
  };
  std::vector<Backend> backends = {
      {"mpi_raw", Device::cpu(), [&](Coll c, Buffers& b) { raw_mpi(c, b, pg.world(), n); }, [] {}},
      {"recforge_mpi", Device::cpu(), [&](Coll c, Buffers& b) { via_communicator(c, b, mpi); }, [] {}},
  };
  if (nccl)
    backends.push_back({"recforge_nccl", nccl->device(), [&](Coll c, Buffers& b) { via_communicator(c, b, *nccl); },
                        [&] { nccl->barrier(); }});

  std::vector<size_t> sizes;
  for (size_t s = 4096; s <= (size_t{64} << 20); s *= 4) sizes.push_back(s);
  const std::vector<Coll> colls = {Coll::kAllReduce, Coll::kAllGather, Coll::kReduceScatter, Coll::kAllToAll};

  if (pg.rank() == 0) {
    std::printf("recforge bench comm: %d ranks on %d host(s), fp32, %s; median of 5 repetitions\n", n,
                n / std::max(1, pg.local_size()), nccl ? "MPI and NCCL" : "MPI (no GPU per rank: NCCL skipped)");
    std::printf("%-15s %-14s %10s %11s %10s %10s %9s\n", "collective", "backend", "bytes", "time_us", "algbw_GB/s",
                "busbw_GB/s", "vs_mpi_raw");
  }
  for (Coll c : colls) {
    for (size_t bytes : sizes) {
      // Per-rank counts must divide: round the size down to a multiple of 4 * n bytes.
      size_t b_eff = bytes / (4 * static_cast<size_t>(n)) * (4 * static_cast<size_t>(n));
      double raw_busbw = 0;
      for (Backend& be : backends) {
        if (bytes == sizes.front()) {
          int ok = validate(c, [&](Buffers& b) { be.run(c, b); be.sync(); }, b_eff, n, be.dev) ? 1 : 0, all_ok = 0;
          MPI_Allreduce(&ok, &all_ok, 1, MPI_INT, MPI_MIN, pg.world());
          if (!all_ok) throw BackendError(std::string("bench comm: ") + coll_name(c) + " on " + be.name + " gave wrong results");
        }
        Buffers buf = make_buffers(b_eff, n, be.dev);
        // Fewer iterations for the largest messages keep the whole table under a minute on 2 cores.
        int64_t iters = std::max<int64_t>(2, b_eff >= (size_t{16} << 20) ? steps / 10 : steps);
        for (int64_t i = 0; i < warmup; ++i) be.run(c, buf);
        be.sync();
        std::vector<double> reps;
        for (int rep = 0; rep < 5; ++rep) {
          MPI_Barrier(pg.world());
          auto t0 = std::chrono::steady_clock::now();
          for (int64_t i = 0; i < iters; ++i) be.run(c, buf);
          be.sync();
          double sec = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count() / iters;
          double slowest = 0;
          MPI_Allreduce(&sec, &slowest, 1, MPI_DOUBLE, MPI_MAX, pg.world());
          reps.push_back(slowest);
        }
        std::sort(reps.begin(), reps.end());
        double t = reps[reps.size() / 2];
        double algbw = static_cast<double>(b_eff) / t / 1e9;
        double busbw = algbw * bus_factor(c, n);
        if (be.name == "mpi_raw") raw_busbw = busbw;
        if (pg.rank() == 0) {
          double ratio = raw_busbw > 0 ? busbw / raw_busbw : NAN;
          std::printf("%-15s %-14s %10zu %11.1f %10.3f %10.3f %9.2f\n", coll_name(c), be.name.c_str(), b_eff, t * 1e6,
                      algbw, busbw, ratio);
          std::printf("{\"bench\": \"comm\", \"collective\": \"%s\", \"backend\": \"%s\", \"ranks\": %d, \"bytes\": %zu, "
                      "\"time_us\": %.2f, \"algbw_gbps\": %.4f, \"busbw_gbps\": %.4f, \"ceiling\": \"mpi_raw busbw\", "
                      "\"ratio\": %.4f}\n",
                      coll_name(c), be.name.c_str(), n, b_eff, t * 1e6, algbw, busbw, ratio);
        }
      }
    }
  }
  std::fflush(stdout);
  return 0;
}

}  // namespace rf::cli
