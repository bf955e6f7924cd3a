// GradientBuckets, parameter broadcast, exact sparse-gradient merge and metric gathering.
#include "parallel/grad_sync.h"

#include <algorithm>
#include <numeric>
#include <unordered_map>

#include "src/core/error.h"

namespace rf {

GradientBuckets::GradientBuckets(Communicator& comm, const ParameterList& params, double bucket_mb) : comm_(comm) {
  RF_CHECK(bucket_mb > 0, "GradientBuckets: bucket_mb must be > 0, got ", bucket_mb);
  const size_t cap = static_cast<size_t>(bucket_mb * 1024.0 * 1024.0);
  std::vector<int64_t> elements;  // per bucket
  std::vector<DType> dtypes;
  size_t cur_bytes = 0;
  for (size_t k = params.size(); k-- > 0;) {
    Parameter* p = params[k];
    if (p->sparse) continue;
    RF_CHECK(p->grad.defined(), "GradientBuckets: parameter ", p->name, " has no gradient tensor");
    RF_CHECK(p->grad.device() == comm.device(), "GradientBuckets: ", p->name, " has its gradient on ",
             p->grad.device().str(), ", the ", comm.backend(), " communicator works on ", comm.device().str());
    size_t bytes = p->grad.nbytes();
    bool fresh = elements.empty() || dtypes.back() != p->grad.dtype() || (cur_bytes > 0 && cur_bytes + bytes > cap);
    if (fresh) {
      elements.push_back(0);
      dtypes.push_back(p->grad.dtype());
      buckets_.emplace_back();
      cur_bytes = 0;
    }
    slots_.push_back({p, k, buckets_.size() - 1, elements.back()});
    buckets_.back().slots.push_back(slots_.size() - 1);
    elements.back() += p->grad.numel();
    cur_bytes += bytes;
  }
  for (size_t b = 0; b < buckets_.size(); ++b)
    buckets_[b].flat = Tensor::empty({elements[b]}, dtypes[b], comm.device());
  marked_.assign(slots_.size(), false);
}

GradientBuckets::~GradientBuckets() {
  // Outstanding all-reduces still write into the buckets: complete them before the memory goes.
  for (Bucket& b : buckets_) {
    if (b.work) {
      try { b.work->wait(); } catch (...) {}
    }
  }
}

std::vector<size_t> GradientBuckets::bucket_params(size_t b) const {
  std::vector<size_t> out;
  for (size_t s : buckets_.at(b).slots) out.push_back(slots_[s].index);
  return out;
}

size_t GradientBuckets::bucket_bytes(size_t b) const { return buckets_.at(b).flat.nbytes(); }

void GradientBuckets::pack(Slot& s) {
  const Tensor& g = s.param->grad;
  Bucket& b = buckets_[s.bucket];
  RF_CHECK(g.defined() && g.dtype() == b.flat.dtype() && g.device() == b.flat.device(), "GradientBuckets: gradient of ",
           s.param->name, " changed dtype or device since the buckets were built");
  Tensor dst = b.flat.slice_rows(s.offset, s.offset + g.numel());
  dst.copy_from(g);
  ++b.ready;
}

void GradientBuckets::launch_ready_buckets() {
  while (next_launch_ < buckets_.size() && buckets_[next_launch_].ready == buckets_[next_launch_].slots.size()) {
    Bucket& b = buckets_[next_launch_++];
    b.work = comm_.all_reduce_async(b.flat, ReduceOp::kAvg);
  }
  // MPI advances non-blocking collectives only inside MPI calls: give the launched ones a turn.
  for (size_t i = 0; i < next_launch_; ++i)
    if (buckets_[i].work) buckets_[i].work->test();
}

void GradientBuckets::mark_ready(const Parameter* p) {
  if (comm_.size() == 1) return;
  // Linear in the number of parameters, which is small (tens); a map would cost more to keep.
  for (size_t i = 0; i < slots_.size(); ++i) {
    if (slots_[i].param != p) continue;
    RF_CHECK(!marked_[i], "GradientBuckets: ", p->name, " marked ready twice in one step");
    marked_[i] = true;
    pack(slots_[i]);
    launch_ready_buckets();
    return;
  }
  RF_CHECK(false, "GradientBuckets: ", p ? p->name : std::string("(null)"), " is not a dense parameter of these buckets");
}

void GradientBuckets::finish() {
  if (comm_.size() == 1) return;
  for (size_t i = 0; i < slots_.size(); ++i)
    if (!marked_[i]) pack(slots_[i]);
  launch_ready_buckets();
  RF_CHECK(next_launch_ == buckets_.size(), "GradientBuckets: internal: not every bucket launched");
  for (Bucket& b : buckets_) {
    b.work->wait();
    b.work.reset();
    for (size_t s : b.slots) {
      Slot& slot = slots_[s];
      slot.param->grad.copy_from(b.flat.slice_rows(slot.offset, slot.offset + slot.param->grad.numel()));
    }
    b.ready = 0;
  }
  std::fill(marked_.begin(), marked_.end(), false);
  next_launch_ = 0;
}

void broadcast_parameters(Communicator& comm, const ParameterList& params, int root) {
  if (comm.size() == 1) return;
  for (Parameter* p : params) {
    if (p->value.device() == comm.device()) {
      comm.broadcast(p->value, root);
    } else {
      Tensor staged = p->value.to(comm.device());
      comm.broadcast(staged, root);
      p->value.copy_from(staged);
    }
  }
}

void sync_sparse_grads(Communicator& comm, Parameter& p) {
  RF_CHECK(p.sparse, "sync_sparse_grads: ", p.name, " is not a sparse parameter");
  const int n = comm.size();
  if (n == 1) return;
  RF_CHECK(p.value.dim() == 2, "sync_sparse_grads: ", p.name, " is not a [rows, dim] table");
  const int64_t dim = p.value.size(1);
  SparseGrad& sg = p.sparse_grad;
  Device home = sg.rows.defined() ? sg.rows.device() : Device::cpu();
  Tensor rows = sg.rows.defined() ? sg.rows : Tensor::empty({0}, DType::kI64);
  Tensor values = sg.values.defined() ? sg.values : Tensor::empty({0, dim}, DType::kF32);
  check_dtype(rows, DType::kI64, "sync_sparse_grads rows");
  check_dtype(values, DType::kF32, "sync_sparse_grads values");
  const int64_t u = rows.numel();
  RF_CHECK(values.numel() == u * dim, "sync_sparse_grads: ", p.name, ": ", u, " rows but values ",
           shape_str(values.shape()));

  Tensor all_rows = comm.all_gather_v(rows.view({u}).on(comm.device())).on(Device::cpu());
  Tensor all_vals = comm.all_gather_v(values.view({u * dim}).on(comm.device())).on(Device::cpu());
  const int64_t total = all_rows.numel();
  const int64_t* r = all_rows.data<int64_t>();
  const float* v = all_vals.data<float>();

  // Each rank's rows are sorted and unique, so a stable sort by row keeps equal rows in rank order:
  // every rank adds the same partial sums in the same order.
  std::vector<int64_t> order(static_cast<size_t>(total));
  std::iota(order.begin(), order.end(), 0);
  std::stable_sort(order.begin(), order.end(), [r](int64_t a, int64_t b) { return r[a] < r[b]; });
  int64_t unique = 0;
  for (int64_t i = 0; i < total; ++i)
    if (i == 0 || r[order[i]] != r[order[i - 1]]) ++unique;

  Tensor out_rows = Tensor::empty({unique}, DType::kI64);
  Tensor out_vals = Tensor::zeros({unique, dim}, DType::kF32);
  int64_t* orow = out_rows.data<int64_t>();
  float* oval = out_vals.data<float>();
  int64_t k = -1;
  for (int64_t i = 0; i < total; ++i) {
    int64_t src = order[i];
    if (i == 0 || r[src] != r[order[i - 1]]) orow[++k] = r[src];
    float* dst = oval + k * dim;
    const float* add = v + src * dim;
    for (int64_t j = 0; j < dim; ++j) dst[j] += add[j];
  }
  const float fn = static_cast<float>(n);
  for (int64_t i = 0; i < unique * dim; ++i) oval[i] /= fn;
  sg.rows = out_rows.on(home);
  sg.values = out_vals.on(home);
}

void gather_metrics(Communicator& comm, BinaryMetrics& m) {
  if (comm.size() == 1) return;
  auto gather = [&](const std::vector<float>& x) {
    Tensor t = Tensor::from_vector(x, {static_cast<int64_t>(x.size())});
    return comm.all_gather_v(t.on(comm.device())).to_vector<float>();
  };
  std::vector<float> scores = gather(m.scores());
  std::vector<float> labels = gather(m.labels());
  BinaryMetrics all;
  all.add(scores.data(), labels.data(), scores.size());
  m = std::move(all);
}

}  // namespace rf
