// MpiCommunicator: host-memory collectives over MPI, the widening fp16/bf16 reduction ops and the
// average as a sum followed by one division per element.
#include "parallel/mpi_communicator.h"

#include <algorithm>
#include <climits>
#include <type_traits>
#include <mutex>

#include "src/core/error.h"
#include "src/core/precision.h"

namespace rf {

const char* reduce_op_name(ReduceOp op) {
  switch (op) {
    case ReduceOp::kSum: return "sum";
    case ReduceOp::kAvg: return "avg";
    case ReduceOp::kMax: return "max";
  }
  return "?";
}

namespace {

template <class H, bool kMax>
void reduce16(void* in, void* inout, int* len, MPI_Datatype*) {
  const H* a = static_cast<const H*>(in);
  H* b = static_cast<H*>(inout);
  for (int i = 0; i < *len; ++i) {
    float x = to_f32(a[i]), y = to_f32(b[i]);
    float r = kMax ? (x > y ? x : y) : x + y;
    if constexpr (std::is_same_v<H, f16>) b[i] = to_f16(r);
    else b[i] = to_bf16(r);
  }
}

struct SixteenBitOps {
  MPI_Op sum_f16, max_f16, sum_bf16, max_bf16;
};

const SixteenBitOps& sixteen_bit_ops() {
  // Created once after MPI_Init; they live until MPI_Finalize frees them.
  static const SixteenBitOps ops = [] {
    SixteenBitOps o;
    MPI_Op_create(&reduce16<f16, false>, 1, &o.sum_f16);
    MPI_Op_create(&reduce16<f16, true>, 1, &o.max_f16);
    MPI_Op_create(&reduce16<bf16, false>, 1, &o.sum_bf16);
    MPI_Op_create(&reduce16<bf16, true>, 1, &o.max_bf16);
    return o;
  }();
  return ops;
}

void check_host(const Tensor& t, const char* what) {
  RF_CHECK(t.defined(), what, ": undefined tensor");
  RF_CHECK(t.device().is_cpu(), what, ": MpiCommunicator needs host tensors, got ", t.device().str());
}

int mpi_count(int64_t n, const char* what) {
  RF_CHECK(n >= 0 && n <= INT_MAX, what, ": ", n, " elements exceed MPI's int count");
  return static_cast<int>(n);
}

// Blocking calls split buffers larger than MPI's int count into chunks.
constexpr int64_t kChunk = int64_t{1} << 30;

class MpiWork final : public CommWork {
 public:
  MpiWork(MPI_Request req, Tensor t, ReduceOp op, int n) : req_(req), t_(std::move(t)), op_(op), n_(n) {}
  ~MpiWork() override {
    // A request dropped without wait() would let MPI write into freed memory later.
    if (!done_) {
      try { wait(); } catch (...) {}
    }
  }
  void wait() override {
    if (done_) return;
    RF_CHECK_MPI(MPI_Wait(&req_, MPI_STATUS_IGNORE));
    complete();
  }
  bool test() override {
    if (done_) return true;
    int flag = 0;
    RF_CHECK_MPI(MPI_Test(&req_, &flag, MPI_STATUS_IGNORE));
    if (flag) complete();
    return done_;
  }

 private:
  void complete() {
    done_ = true;
    if (op_ == ReduceOp::kAvg) divide_in_place(t_, n_);
  }
  MPI_Request req_;
  Tensor t_;
  ReduceOp op_;
  int n_;
  bool done_ = false;
};

}  // namespace

MPI_Op mpi_reduce_op_for(DType t, ReduceOp op) {
  bool max = op == ReduceOp::kMax;
  if (t == DType::kF16) return max ? sixteen_bit_ops().max_f16 : sixteen_bit_ops().sum_f16;
  if (t == DType::kBF16) return max ? sixteen_bit_ops().max_bf16 : sixteen_bit_ops().sum_bf16;
  return max ? MPI_MAX : MPI_SUM;
}

void divide_in_place(Tensor& t, int n) {
  if (n == 1) return;
  check_host(t, "divide_in_place");
  int64_t m = t.numel();
  switch (t.dtype()) {
    case DType::kF32: {
      float* p = t.data<float>();
      for (int64_t i = 0; i < m; ++i) p[i] /= static_cast<float>(n);  // division: exact when the mean is
      break;
    }
    case DType::kF16: {
      f16* p = t.data<f16>();
      for (int64_t i = 0; i < m; ++i) p[i] = to_f16(to_f32(p[i]) / static_cast<float>(n));
      break;
    }
    case DType::kBF16: {
      bf16* p = t.data<bf16>();
      for (int64_t i = 0; i < m; ++i) p[i] = to_bf16(to_f32(p[i]) / static_cast<float>(n));
      break;
    }
    case DType::kI32: {
      int32_t* p = t.data<int32_t>();
      for (int64_t i = 0; i < m; ++i) p[i] /= n;
      break;
    }
    case DType::kI64: {
      int64_t* p = t.data<int64_t>();
      for (int64_t i = 0; i < m; ++i) p[i] /= n;
      break;
    }
  }
}

MpiCommunicator::MpiCommunicator(MPI_Comm comm) {
  MPI_Comm dup;
  RF_CHECK_MPI(MPI_Comm_dup(comm, &dup));
  comm_ = MpiCommHandle(dup);
  MPI_Comm_set_errhandler(dup, MPI_ERRORS_RETURN);
  RF_CHECK_MPI(MPI_Comm_rank(dup, &rank_));
  RF_CHECK_MPI(MPI_Comm_size(dup, &size_));
  sixteen_bit_ops();
}

void MpiCommunicator::all_reduce(Tensor& t, ReduceOp op) {
  check_host(t, "all_reduce");
  MPI_Datatype type = mpi_type(t.dtype());
  MPI_Op mop = mpi_reduce_op_for(t.dtype(), op);
  char* base = static_cast<char*>(t.raw());
  size_t esize = dtype_size(t.dtype());
  for (int64_t off = 0; off < t.numel(); off += kChunk) {
    int n = static_cast<int>(std::min(kChunk, t.numel() - off));
    RF_CHECK_MPI(MPI_Allreduce(MPI_IN_PLACE, base + off * esize, n, type, mop, comm()));
  }
  if (op == ReduceOp::kAvg) divide_in_place(t, size_);
}

std::unique_ptr<CommWork> MpiCommunicator::all_reduce_async(Tensor& t, ReduceOp op) {
  check_host(t, "all_reduce_async");
  MPI_Request req;
  RF_CHECK_MPI(MPI_Iallreduce(MPI_IN_PLACE, t.raw(), mpi_count(t.numel(), "all_reduce_async"),
                              mpi_type(t.dtype()), mpi_reduce_op_for(t.dtype(), op), comm(), &req));
  return std::make_unique<MpiWork>(req, t, op, size_);
}

void MpiCommunicator::broadcast(Tensor& t, int root) {
  check_host(t, "broadcast");
  RF_CHECK(root >= 0 && root < size_, "broadcast: root ", root, " outside a group of ", size_);
  char* base = static_cast<char*>(t.raw());
  size_t esize = dtype_size(t.dtype());
  for (int64_t off = 0; off < t.numel(); off += kChunk) {
    int n = static_cast<int>(std::min(kChunk, t.numel() - off));
    RF_CHECK_MPI(MPI_Bcast(base + off * esize, n, mpi_type(t.dtype()), root, comm()));
  }
}

void MpiCommunicator::all_gather(const Tensor& in, Tensor& out) {
  check_host(in, "all_gather");
  check_host(out, "all_gather");
  RF_CHECK(in.dtype() == out.dtype(), "all_gather: ", dtype_name(in.dtype()), " into ", dtype_name(out.dtype()));
  RF_CHECK(out.numel() == in.numel() * size_, "all_gather: out holds ", out.numel(), " elements, need ",
           in.numel(), " x ", size_);
  int n = mpi_count(in.numel(), "all_gather");
  MPI_Datatype type = mpi_type(in.dtype());
  RF_CHECK_MPI(MPI_Allgather(in.raw(), n, type, out.raw(), n, type, comm()));
}

Tensor MpiCommunicator::all_gather_v(const Tensor& in, std::vector<int64_t>* counts_out) {
  check_host(in, "all_gather_v");
  std::vector<int64_t> counts(static_cast<size_t>(size_));
  int64_t mine = in.numel();
  RF_CHECK_MPI(MPI_Allgather(&mine, 1, MPI_INT64_T, counts.data(), 1, MPI_INT64_T, comm()));
  std::vector<int> icounts(counts.size()), displs(counts.size());
  int64_t total = 0;
  for (size_t r = 0; r < counts.size(); ++r) {
    icounts[r] = mpi_count(counts[r], "all_gather_v");
    displs[r] = mpi_count(total, "all_gather_v offset");
    total += counts[r];
  }
  Tensor out = Tensor::empty({total}, in.dtype());
  MPI_Datatype type = mpi_type(in.dtype());
  RF_CHECK_MPI(MPI_Allgatherv(in.raw(), icounts[static_cast<size_t>(rank_)], type, out.raw(), icounts.data(),
                              displs.data(), type, comm()));
  if (counts_out) *counts_out = std::move(counts);
  return out;
}

void MpiCommunicator::reduce_scatter(const Tensor& in, Tensor& out, ReduceOp op) {
  check_host(in, "reduce_scatter");
  check_host(out, "reduce_scatter");
  RF_CHECK(in.dtype() == out.dtype(), "reduce_scatter: ", dtype_name(in.dtype()), " into ", dtype_name(out.dtype()));
  RF_CHECK(in.numel() == out.numel() * size_, "reduce_scatter: in holds ", in.numel(), " elements, need ",
           out.numel(), " x ", size_);
  RF_CHECK_MPI(MPI_Reduce_scatter_block(in.raw(), out.raw(), mpi_count(out.numel(), "reduce_scatter"),
                                        mpi_type(in.dtype()), mpi_reduce_op_for(in.dtype(), op), comm()));
  if (op == ReduceOp::kAvg) divide_in_place(out, size_);
}

void MpiCommunicator::all_to_all_v(const Tensor& in, const std::vector<int64_t>& send_counts, Tensor& out,
                                   const std::vector<int64_t>& recv_counts) {
  check_host(in, "all_to_all_v");
  check_host(out, "all_to_all_v");
  RF_CHECK(in.dtype() == out.dtype(), "all_to_all_v: ", dtype_name(in.dtype()), " into ", dtype_name(out.dtype()));
  RF_CHECK(send_counts.size() == static_cast<size_t>(size_) && recv_counts.size() == static_cast<size_t>(size_),
           "all_to_all_v: need one count per rank (", size_, ")");
  std::vector<int> sc(size_), sd(size_), rc(size_), rd(size_);
  int64_t st = 0, rt = 0;
  for (int p = 0; p < size_; ++p) {
    sc[p] = mpi_count(send_counts[p], "all_to_all_v");
    rc[p] = mpi_count(recv_counts[p], "all_to_all_v");
    sd[p] = mpi_count(st, "all_to_all_v offset");
    rd[p] = mpi_count(rt, "all_to_all_v offset");
    st += send_counts[p];
    rt += recv_counts[p];
  }
  RF_CHECK(st <= in.numel(), "all_to_all_v: sending ", st, " elements from a tensor of ", in.numel());
  RF_CHECK(rt <= out.numel(), "all_to_all_v: receiving ", rt, " elements into a tensor of ", out.numel());
  MPI_Datatype type = mpi_type(in.dtype());
  RF_CHECK_MPI(MPI_Alltoallv(in.raw(), sc.data(), sd.data(), type, out.raw(), rc.data(), rd.data(), type, comm()));
}

void MpiCommunicator::barrier() { RF_CHECK_MPI(MPI_Barrier(comm())); }

}  // namespace rf
