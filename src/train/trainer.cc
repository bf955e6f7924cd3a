// The single-process training loop (see trainer.h).
#include "src/train/trainer.h"

#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <optional>

#include "kernels/concat.h"
#include "kernels/embedding_bag.h"
#include "kernels/loss.h"
#include "kernels/loss_scaler.h"
#include "kernels/threads.h"
#include "profiling/nvtx.h"
#include "profiling/step_timer.h"
#include "parallel/grad_sync.h"
#include "parallel/mpi_communicator.h"
#include "parallel/process_group.h"
#include "src/model/model_parallel.h"
#include "src/checkpoint/checkpoint.h"
#include "src/config/config.h"
#include "src/core/cuda_graph.h"
#include "src/core/log.h"
#include "src/io/tensor_file.h"
#include "src/metrics/binary_metrics.h"
#include "src/optim/device_optimizer.h"
#include "src/optim/optimizer.h"
#include "src/optim/schedule.h"
#include "src/train/data_source.h"
#include "src/serve/export.h"
#include "src/train/progress.h"
#include "dataloader/batch_source.h"

#if RECFORGE_WITH_CUDA
#include "kernels/cuda/cuda_ops.h"
#endif

namespace rf {

struct Trainer::Timing {
  PhaseTimers timers;
  size_t data = timers.phase("data wait");
  size_t forward = timers.phase("forward");
  size_t backward = timers.phase("backward");
  size_t sync = timers.phase("gradient sync");
  size_t optimizer = timers.phase("optimizer");
  size_t eval = timers.phase("evaluation");
  size_t checkpoint = timers.phase("checkpoint");
  Tensor logits, dlogits;  // [batch], on the model's device
  std::unique_ptr<DynamicLossScaler> scaler;  // train.precision=fp16 only
};

// train.cuda_graph (docs/cuda.md): one eager step first (state created on first use, cuBLASLt's chosen
// algorithms, cub's scratch sizes), then the next batch's step is captured and every batch with the same
// shapes replays it; other shapes (a short last batch) run eagerly.
struct Trainer::GraphStep {
  explicit GraphStep(int device) : graph(device) {}
  int64_t warmup = 1;                // eager steps left before the capture
  std::vector<Shape> shapes;         // of the captured batch's tensors
  data::Batch input;                 // device buffers the graph reads, refilled before each replay
  Tensor logits, dlogits, loss;      // written by the graph; loss [1] fp32
  std::vector<int64_t> table_rows;   // for the host-side index checks
  int64_t replays = 0;
  size_t phase = 0;
  CudaGraph graph;                   // declared last: destroyed first, before the buffers it uses
};

namespace {

std::vector<Shape> shapes_of(const data::Batch& b) {
  std::vector<Shape> s;
  for (const Tensor& t : data::tensors_of(b)) s.push_back(t.shape());
  return s;
}

// Queues copies of every tensor of `from` into the same-shaped tensor of `to` on the device's stream:
// one launch for a batch already on that device, else a copy per tensor that does not wait for a
// page-locked source (a loader's batch stays valid until the second following next(), and every step
// reads its loss, which waits for the copies, before it returns).
void copy_batch(data::Batch& to, const data::Batch& from) {
  RF_CHECK(from.indices.size() == to.indices.size() && from.offsets.size() == to.offsets.size(),
           "training step: a batch of ", from.indices.size(), " features for ", to.indices.size());
  const std::vector<Tensor> src = data::tensors_of(from), dst = data::tensors_of(to);
  for (size_t i = 0; i < src.size(); ++i)
    RF_CHECK(dst[i].shape() == src[i].shape() && dst[i].dtype() == src[i].dtype(), "training step: batch tensor ",
             shape_str(src[i].shape()), " does not fit the device buffer ", shape_str(dst[i].shape()));
  if (from.labels.device() == to.labels.device()) return copy_tensors(src, dst);
  for (size_t i = 0; i < src.size(); ++i)
    copy_bytes_async(dst[i].raw(), dst[i].device(), src[i].raw(), src[i].device(), src[i].nbytes());
}

data::Batch empty_like(const data::Batch& b, Device dev) {
  return data::map_tensors(b, [&](const Tensor& t) { return Tensor::empty(t.shape(), t.dtype(), dev); });
}

// The step's batch on `dev` (as it is when already there), its copies queued as copy_batch's.
data::Batch batch_on(const data::Batch& b, Device dev) {
  if (!b.labels.defined() || b.labels.device() == dev) return b;
  data::Batch out = empty_like(b, dev);
  copy_batch(out, b);
  return out;
}

// The embedding ops' device-side bounds checks (they synchronise) and the fused embedding update's
// determinism as train.bounds_checks and train.deterministic say for the steps of this trainer, restored
// afterwards; a captured step has the checks off (its batches are checked before each replay instead).
#if RECFORGE_WITH_CUDA
struct ScopedKernelSettings {
  bool checks_were = cuda::embedding_bounds_checks();
  bool deterministic_was = cuda::deterministic_embedding_update();
  ScopedKernelSettings(bool checks, bool deterministic) {
    cuda::set_embedding_bounds_checks(checks);
    cuda::set_deterministic_embedding_update(deterministic);
  }
  ~ScopedKernelSettings() {
    cuda::set_embedding_bounds_checks(checks_were);
    cuda::set_deterministic_embedding_update(deterministic_was);
  }
};
#else
struct ScopedKernelSettings {
  ScopedKernelSettings(bool, bool) {}
};
#endif

OptimizerHyperparams hyperparams_from(const Config& cfg) {
  OptimizerHyperparams hp;
  hp.dense_lr = cfg.get_float("optimizer.lr");
  double sparse_lr = cfg.get_float("optimizer.sparse_lr");
  hp.sparse_lr = sparse_lr > 0 ? sparse_lr : hp.dense_lr;
  hp.weight_decay = cfg.get_float("optimizer.weight_decay");
  hp.beta1 = cfg.get_float("optimizer.beta1");
  hp.beta2 = cfg.get_float("optimizer.beta2");
  const std::string& dense = cfg.get_string("optimizer.dense");
  hp.eps = dense == "adagrad" ? cfg.get_float("optimizer.adagrad_eps") : cfg.get_float("optimizer.eps");
  hp.sparse_eps = cfg.get_float("optimizer.adagrad_eps");
  hp.initial_accumulator = cfg.get_float("optimizer.adagrad_init");
  return hp;
}

int64_t count_lines(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::vector<char> buf(1 << 20);
  int64_t lines = 0;
  while (in) {
    in.read(buf.data(), static_cast<std::streamsize>(buf.size()));
    std::streamsize n = in.gcount();
    for (std::streamsize i = 0; i < n; ++i) lines += buf[static_cast<size_t>(i)] == '\n';
  }
  return lines;
}

// Test hook for the failure path: RECFORGE_FAULT_RANK=<rank>@<step> makes that rank throw before that
// step, as a bad row or an out-of-memory on one rank would.
void maybe_inject_fault(int rank, int64_t step) {
  static const char* spec = std::getenv("RECFORGE_FAULT_RANK");
  if (spec && std::string(spec) == std::to_string(rank) + "@" + std::to_string(step))
    throw Error("RECFORGE_FAULT_RANK=" + std::string(spec) + ": injected failure on rank " + std::to_string(rank) +
                " at step " + std::to_string(step));
}

std::string json_number(double v) {
  if (!std::isfinite(v)) return "null";
  char s[64];
  std::snprintf(s, sizeof s, "%.6f", v);
  return s;
}

// Which state kinds the optimizers keep, and which are per row, from a probe on two tiny parameters:
// ranks that own no block of a table must still take part in gathering its state.
std::vector<ModelParallel::StateKind> optimizer_state_kinds(const Config& cfg) {
  auto probe = make_optimizers(cfg.get_string("optimizer.dense"), cfg.get_string("optimizer.sparse"),
                               hyperparams_from(cfg));
  Parameter dense, sparse;
  dense.name = "d";
  sparse.name = "s";
  sparse.sparse = true;
  dense.value = Tensor::zeros({2, 3}, DType::kF32);
  sparse.value = Tensor::zeros({2, 3}, DType::kF32);
  probe->init_state({&dense, &sparse});
  std::vector<ModelParallel::StateKind> kinds;
  for (const auto& [key, tensor] : probe->state()) {
    const size_t slash = key.rfind('/');
    kinds.push_back({key.substr(0, slash), key.substr(slash + 1) == "s", tensor->dim() == 1});
  }
  return kinds;
}

}  // namespace

namespace {
data::LoaderOptions loader_options_from(const Config& cfg) {
  data::LoaderOptions o;
  o.shuffle = cfg.get_bool("data.shuffle");
  o.seed = static_cast<uint64_t>(cfg.get_int("data.shuffle_seed"));
  o.threads = static_cast<int>(cfg.get_int("data.loader_threads"));
  o.prefetch_depth = static_cast<int>(cfg.get_int("data.prefetch_depth"));
  o.skip_bad_rows = cfg.get_bool("data.skip_bad_rows");
  int64_t max_rows = cfg.get_int("data.max_rows");
  o.max_rows = max_rows > 0 ? max_rows : -1;
  return o;
}

ModelConfig model_config_for_data(const Config& cfg) {
  data::ColumnSchema schema = schema_from(cfg);
  std::vector<int64_t> sizes = table_sizes_from(schema);
  // Shards preprocessed with a frequency threshold carry their own (vocabulary) table sizes.
  const std::string& train = cfg.get_string("data.train");
  if (!train.empty() && data::is_shard_path(train)) {
    data::LoaderOptions probe_opts;
    probe_opts.threads = 0;
    std::vector<int64_t> from_shards = data::open_train_source(schema, train, 1, 0, 1, probe_opts)->table_sizes();
    if (!from_shards.empty()) sizes = from_shards;
  }
  return model_config_from(cfg, schema.num_dense(), sizes);
}
}  // namespace

Trainer::Trainer(const Config& cfg) : Trainer(cfg, model_config_for_data(cfg)) {}

Trainer::Trainer(const Config& cfg, const ModelConfig& mc) : cfg_(cfg), timing_(std::make_unique<Timing>()) {
  set_num_threads(static_cast<int>(cfg.get_int("train.threads")));
  ProcessGroup& pg = ProcessGroup::init();
  ParallelGrid grid = pg.make_grid(static_cast<int>(cfg.get_int("parallel.tensor_parallel")));
  dp_rank_ = grid.dp_rank;
  dp_size_ = grid.dp_size;
  tp_rank_ = grid.tp_rank;
  // Refuses a global batch the data-parallel world does not divide, before any work is done.
  per_rank_batch(cfg.get_int("train.batch_size"), dp_size_);
  // Model parallelism (src/model/model_parallel.h): tables sharded over the data-parallel group and
  // the top MLP split over the tensor-parallel group; the plan is refused here when it does not fit.
  ModelConfig model_cfg = mc;
  model_cfg.parallel = mp_ = make_model_parallel(cfg, grid, mc);
  if (model_cfg.device.is_cuda() && dp_size_ > 1)
    throw ConfigError("train.device=cuda: data parallelism over MPI runs on the CPU only so far");
  nvtx::set_enabled(cfg.get_bool("profiling.nvtx"));
  model_ = make_model(model_cfg);
  params_ = model_->parameters();
  const std::string& init = cfg.get_string("model.init");
  if (!init.empty() && mp_)  // full tensors: each rank takes its block
    load_blocks_from_full(params_, read_tensors(init), {}, nullptr, init);
  else if (!init.empty())
    load_parameters(init, params_);  // copies into device parameters as needed

  OptimizerHyperparams hp = hyperparams_from(cfg);
  // Parameters on a GPU take the fused kernels (same algorithms and state names as the CPU ones).
  optimizer_ = model_cfg.device.is_cuda()
                   ? make_device_optimizers(cfg.get_string("optimizer.dense"), cfg.get_string("optimizer.sparse"), hp)
                   : make_optimizers(cfg.get_string("optimizer.dense"), cfg.get_string("optimizer.sparse"), hp);
  // fp16 GEMM operands underflow on small gradients: scale the loss (torch.cuda.amp.GradScaler's policy).
  if (model_cfg.compute == DType::kF16) timing_->scaler = std::make_unique<DynamicLossScaler>();
  optimizer_->init_state(params_);
  schedule_ = std::make_unique<LrSchedule>();
  schedule_->warmup_steps = cfg.get_int("optimizer.warmup_steps");
  schedule_->decay = parse_lr_decay(cfg.get_string("optimizer.decay"));
  schedule_->decay_start = cfg.get_int("optimizer.decay_start");
  schedule_->decay_steps = cfg.get_int("optimizer.decay_steps");
  schedule_->validate();
  batch_size_ = cfg.get_int("train.batch_size");
  bounds_checks_ = cfg.get_bool("train.bounds_checks");
  deterministic_ = cfg.get_bool("train.deterministic");
  if (dp_size_ > 1) {
    dp_ = std::make_unique<MpiCommunicator>(grid.data_parallel);
    ParameterList replicated;  // sharded parameters are initialised identically from the seed
    for (Parameter* p : params_)
      if (p->sharding == Sharding::kReplicated) replicated.push_back(p);
    broadcast_parameters(*dp_, replicated);  // every rank starts from rank 0's weights
    ParameterList dense;
    for (Parameter* p : params_)
      if (!p->sparse) dense.push_back(p);
    buckets_ = std::make_unique<GradientBuckets>(*dp_, dense, static_cast<double>(cfg.get_int("parallel.bucket_mb")));
    // Overlap: each layer's gradients go into their bucket as soon as the backward has written them,
    // and a full bucket starts its non-blocking all-reduce while the backward goes on.
    if (cfg.get_bool("parallel.overlap"))
      model_->set_grad_ready_hook([this](const Parameter* p) { buckets_->mark_ready(p); });
  }
  eval_batch_size_ = cfg.get_int("train.eval_batch_size");
  // One GPU without loss scaling: the embedding tables are updated inside the backward, straight from
  // the lookups (one sort and one update pass for all tables), rather than through stored SparseGrads.
  // Data parallelism merges sparse gradients across ranks and the fp16 loss scaler inspects them before
  // any update, so both keep the SparseGrad path; sharded tables have their own.
  if (model_cfg.device.is_cuda() && dp_size_ == 1 && !timing_->scaler && cfg.get_bool("train.fused_embedding_update"))
    model_->set_embedding_update([this](const ParameterList& tables, const std::vector<Tensor>& indices,
                                        const std::vector<Tensor>& offsets, const Tensor& grad_pooled, PoolMode mode) {
      return optimizer_->fused_embedding_update(tables, indices, offsets, grad_pooled, mode, schedule_->scale(step_));
    });
  if (cfg.get_bool("train.cuda_graph")) {
    // The captured step must not need the host in the middle: everything below does.
    std::string why;
    if (!model_cfg.device.is_cuda())
      why = "train.device is " + model_cfg.device.str() + "; CUDA graphs need train.device=cuda";
    else if (mp_)
      why = "[parallel] shards the model, and its exchanges are driven from the host";
    else if (timing_->scaler)
      why = "train.precision=fp16 reads the gradients' overflow flag on the host every step (dynamic loss scaling)";
    else if (!cfg.get_bool("train.fused_embedding_update"))
      why = "train.fused_embedding_update=false reads the sparse gradients' sizes on the host every step";
    if (!why.empty()) throw ConfigError("[train] cuda_graph=true: " + why + "; set cuda_graph=false");
    graph_ = std::make_unique<GraphStep>(model_cfg.device.index);
    graph_->table_rows = model_cfg.table_sizes;
    graph_->phase = timing_->timers.phase("step (CUDA graph)");
  }
}

Trainer::~Trainer() = default;

const PhaseTimers& Trainer::timers() const { return timing_->timers; }

const DynamicLossScaler* Trainer::loss_scaler() const { return timing_->scaler.get(); }

int64_t Trainer::cuda_graph_replays() const { return graph_ ? graph_->replays : 0; }

bool Trainer::graph_step(const data::Batch& batch, double& loss) {
  GraphStep& g = *graph_;
  if (g.warmup > 0) {
    --g.warmup;
    return false;
  }
  const std::vector<Shape> shapes = shapes_of(batch);
  if (g.graph.captured() && shapes != g.shapes) return false;
  ScopedPhase phase(timing_->timers, g.phase);
  RF_NVTX_RANGE("step (CUDA graph)");
  // The captured step cannot stop for the embedding ops' bounds checks: with train.bounds_checks the
  // batch is checked here instead, with the same errors (table, bag, position): on the host for the
  // loader's batches, with one launch and one synchronisation for batches already on the device.
  if (bounds_checks_) check_embedding_bags(batch.indices, batch.offsets, g.table_rows);
  const Device dev = device();
  if (!g.graph.captured()) {
    g.input = empty_like(batch, dev);
    g.logits = Tensor::empty({batch.size()}, DType::kF32, dev);
    g.dlogits = Tensor::empty({batch.size()}, DType::kF32, dev);
    g.loss = Tensor::empty({1}, DType::kF32, dev);
    g.shapes = shapes;
    // From now on every step's launches read the learning rate and bias corrections from the device
    // (the array is allocated here, outside the capture; prepare_step below writes it before the replay).
    optimizer_->set_scalars_on_device(true);
    const ModelInput in = model_input(g.input);
    const int64_t step = step_;
    const double lr_scale = schedule_->scale(step_);
    ScopedKernelSettings settings(/*checks=*/false, deterministic_);
    // One rank and no loss scaling (the constructor refuses the rest): the gradient scale is 1.
    try {
      g.graph.capture("train.cuda_graph", [&] {
        model_->forward(in, g.logits);
        bce_with_logits_forward(g.logits, g.input.labels, g.loss);
        bce_with_logits_backward(g.logits, g.input.labels, 1.0f, g.dlogits);
        model_->backward(in, g.dlogits);  // the embedding tables' fused update included
        optimizer_->step(params_, step, lr_scale);
      });
    } catch (const BackendError& e) {
      throw BackendError(std::string(e.what()) + "; [train] cuda_graph=false runs the step without a graph");
    }
    log_info("train.cuda_graph: captured the step for batches of ", batch.size(), " rows");
  }
  copy_batch(g.input, batch);
  optimizer_->prepare_step(step_, schedule_->scale(step_));
  g.graph.replay();
  ++g.replays;
  loss = static_cast<double>(g.loss.to_vector<float>()[0]);  // waits for the step
  return true;
}

std::pair<int64_t, int64_t> Trainer::rank_share(int64_t rows) const {
  return {rows * dp_rank_ / dp_size_, rows * (dp_rank_ + 1) / dp_size_};
}

double Trainer::train_step(const data::Batch& global) {
  if (dp_size_ == 1) return train_step_local(global, global.size());
  auto [begin, end] = rank_share(global.size());
  return train_step_local(data::slice_batch(global, begin, end), global.size());
}

double Trainer::train_step_local(const data::Batch& host_or_device, int64_t global_rows, int64_t* global_rows_out) {
  Timing& t = *timing_;
  if (graph_ && host_or_device.size() > 0) {
    double loss = 0;
    if (graph_step(host_or_device, loss)) {
      if (global_rows_out) *global_rows_out = global_rows;
      ++step_;
      return loss;
    }
  }
  // The per-step scalars, where the device optimizers read them from device memory (after a capture).
  optimizer_->prepare_step(step_, schedule_->scale(step_));
  ScopedKernelSettings settings(bounds_checks_, deterministic_);
  const Device dev = device();
  const data::Batch mine = batch_on(host_or_device, dev);  // host -> device once per step on a GPU
  int64_t n = mine.size();
  if (global_rows < 0) {  // the loader split the batch: the ranks' shares add up to the global batch
    Tensor rows = Tensor::from_vector<int64_t>({n}, {1});
    dp_->all_reduce(rows, ReduceOp::kSum);
    global_rows = rows.data<int64_t>()[0];
  }
  if (global_rows_out) *global_rows_out = global_rows;
  if (t.logits.shape() != Shape{n} || !(t.logits.device() == dev)) {
    t.logits = Tensor::empty({n}, DType::kF32, dev);
    t.dlogits = Tensor::empty({n}, DType::kF32, dev);
  }
  ModelInput in = model_input(mine);
  double loss = 0;
  {
    ScopedPhase p(t.timers, t.forward);
    RF_NVTX_RANGE("forward");
    if (n > 0) {
      model_->forward(in, t.logits);
      loss = bce_with_logits_forward(t.logits, mine.labels);
    }
  }
  {
    ScopedPhase p(t.timers, t.backward);
    RF_NVTX_RANGE("backward");
    // The loss is the mean over the global batch: this rank's rows weigh n / global of it, and the
    // gradient all-reduce averages over ranks, so scale by dp_size * n / global (1 in a world of one).
    float scale = static_cast<float>(static_cast<double>(dp_size_) * static_cast<double>(n) /
                                     static_cast<double>(global_rows));
    if (t.scaler) scale *= t.scaler->scale();
    if (n > 0) {
      bce_with_logits_backward(t.logits, mine.labels, scale, t.dlogits);
      model_->backward(in, t.dlogits);
    } else {
      // A global batch smaller than the world leaves this rank without rows: it contributes zeros.
      for (Parameter* prm : params_) {
        if (prm->sparse) {
          prm->sparse_grad.rows = Tensor::empty({0}, DType::kI64);
          prm->sparse_grad.values = Tensor::empty({0, prm->value.size(1)}, DType::kF32);
        } else {
          prm->grad.fill_zero();
        }
      }
    }
  }
  if (dp_size_ > 1) {
    ScopedPhase p(t.timers, t.sync);
    RF_NVTX_RANGE("gradient sync");
    buckets_->finish();
    for (Parameter* prm : params_)
      if (prm->sparse && prm->sharding == Sharding::kReplicated) sync_sparse_grads(*dp_, *prm);  // sharded: owners have it
    Tensor l = Tensor::from_vector<float>({static_cast<float>(loss * static_cast<double>(n))}, {1});
    dp_->all_reduce(l, ReduceOp::kSum);
    loss = static_cast<double>(l.data<float>()[0]) / static_cast<double>(global_rows);
  }
  {
    ScopedPhase p(t.timers, t.optimizer);
    RF_NVTX_RANGE("optimizer");
    bool apply = true;
    if (t.scaler) {
      // Unscale every gradient (dense and the touched embedding rows) and look for inf/NaN in the same
      // pass; on overflow the step is skipped and the scale backs off (the LR schedule still advances).
      std::vector<Tensor*> grads;
      for (Parameter* prm : params_) {
        Tensor* g = prm->sparse ? &prm->sparse_grad.values : &prm->grad;
        if (g->defined() && g->numel() > 0) grads.push_back(g);
      }
      apply = t.scaler->unscale_and_update(grads);
      if (!apply) nvtx::mark("loss scaler: overflow, step skipped");
    }
    if (apply) optimizer_->step(params_, step_, schedule_->scale(step_));
  }
  ++step_;
  return loss;
}

EvalResult Trainer::evaluate(const data::Batch& all) {
  ScopedPhase p(timing_->timers, timing_->eval);
  // Each rank scores its share of the rows; the scores are gathered so AUC is exact over all of them.
  auto [first, last] = rank_share(all.size());
  BinaryMetrics metrics;
  Tensor logits;
  // Model parallelism: the ranks exchange lookups in every forward, so each runs the same number of
  // forwards over near-equal chunks of its share.
  const int64_t max_share = (all.size() + dp_size_ - 1) / dp_size_;
  const int64_t chunks = (max_share + eval_batch_size_ - 1) / eval_batch_size_;
  for (int64_t begin = first, c = 0; mp_ ? c < chunks : begin < last; ++c) {
    int64_t end = mp_ ? first + (last - first) * (c + 1) / chunks : std::min(last, begin + eval_batch_size_);
    data::Batch part = (begin == 0 && end == all.size()) ? all : data::slice_batch(all, begin, end);
    if (logits.shape() != Shape{end - begin}) logits = Tensor::empty({end - begin}, DType::kF32, device());
    model_->forward(model_input(data::batch_to(part, device())), logits);
    const Tensor host_logits = logits.on(Device::cpu());
    metrics.add(host_logits.data<float>(), part.labels.data<float>(), static_cast<size_t>(end - begin));
    begin = end;
  }
  if (dp_size_ > 1) gather_metrics(*dp_, metrics);
  EvalResult r;
  r.rows = all.size();
  r.auc = metrics.auc();
  r.logloss = metrics.logloss();
  return r;
}

TrainSummary Trainer::run() {
  const std::string& train_path = cfg_.get_string("data.train");
  const std::string& test_path = cfg_.get_string("data.test");
  require_file("train", train_path);
  if (!test_path.empty()) require_file("test", test_path);

  data::ColumnSchema schema = schema_from(cfg_);
  data::LoaderOptions lopts = loader_options_from(cfg_);
  // A TSV file or a directory of binary shards (`recforge preprocess`); each rank gets its share of
  // every global batch.
  std::unique_ptr<data::BatchSource> source =
      data::open_train_source(schema, train_path, batch_size_, dp_rank_, dp_size_, lopts);
  log_info("training data: ", source->describe());

  // Held-out sets are read whole; max_rows limits the training file only.
  data::ReaderOptions eval_opts;
  eval_opts.skip_bad_rows = lopts.skip_bad_rows;
  auto load_split = [&](const std::string& path) {
    if (data::is_shard_path(path))
      throw ConfigError("[data] " + path + ": evaluation reads tab-separated files; shard directories are for training");
    std::string skipped;
    data::Batch b = data::load_all(schema, {path}, eval_opts, &skipped);
    if (!skipped.empty()) log_warn(path, ": ", skipped);
    return b;
  };
  data::Batch test, validation;
  if (!test_path.empty()) test = load_split(test_path);
  const std::string& validation_path = cfg_.get_string("data.validation");
  if (!validation_path.empty()) {
    require_file("validation", validation_path);
    validation = load_split(validation_path);
  }
  // Periodic evaluations use the validation split when there is one, else the test split.
  const data::Batch& periodic = validation.size() > 0 ? validation : test;
  const char* periodic_name = validation.size() > 0 ? "validation" : "test";

  int64_t epochs = cfg_.get_int("train.epochs");
  int64_t max_steps = cfg_.get_int("train.steps");
  int64_t eval_every = cfg_.get_int("train.eval_every");
  int64_t steps_per_epoch = source->batches_per_epoch();
  if (steps_per_epoch < 0) {  // TSV: count the lines, for the ETA and the epoch numbers
    int64_t rows = count_lines(train_path);
    if (lopts.max_rows > 0) rows = std::min(rows, lopts.max_rows);
    steps_per_epoch = (rows + batch_size_ - 1) / batch_size_;
  }
  int64_t total_steps = max_steps > 0 ? max_steps : steps_per_epoch * epochs;

  // Resume: weights, optimizer state, step and loader position from a verified checkpoint.
  const std::string ckpt_root = cfg_.get_string("checkpoint.dir");
  const int64_t ckpt_every = cfg_.get_int("checkpoint.every");
  const int ckpt_keep = static_cast<int>(cfg_.get_int("checkpoint.keep"));
  const std::string& resume = cfg_.get_string("checkpoint.resume");
  bool resumed = false;
  if (!resume.empty()) {
    std::string dir = resume;
    if (resume == "auto") {
      if (ckpt_root.empty()) throw ConfigError("[checkpoint] resume=auto needs [checkpoint] dir");
      std::vector<std::string> warnings;
      std::optional<std::string> latest = latest_valid_checkpoint(ckpt_root, &warnings);
      for (const std::string& w : warnings) log_warn(w);
      dir = latest.value_or("");
      if (dir.empty()) log_info("no complete checkpoint under ", ckpt_root, ": starting from step 0");
    }
    if (!dir.empty()) {
      TrainerState ts;
      if (mp_) {  // full tensors: each rank takes its block, whatever sharding wrote them
        std::map<std::string, Tensor> full_params, full_state;
        ts = read_checkpoint(dir, &full_params, &full_state);
        load_blocks_from_full(params_, full_params, optimizer_->state(), &full_state, dir);
      } else {
        ts = load_checkpoint(dir, params_, optimizer_->state());
      }
      step_ = ts.step;
      if (timing_->scaler && ts.loss_scale > 0)
        timing_->scaler->restore(ts.loss_scale, ts.loss_scale_good_steps, ts.loss_scale_skipped);
      if (ts.global_batch != batch_size_)
        throw ConfigError("[train] batch_size = " + std::to_string(batch_size_) + ", but " + dir +
                          " was written with batch_size = " + std::to_string(ts.global_batch) +
                          ": resume with the same global batch");
      data::LoaderPosition pos = data::LoaderPosition::parse(ts.loader_position);
      if (ts.world_size != dp_size_) {
        // Another world size: the position in global batches stays, each rank's row count is new.
        log_info("re-sharding the resumed run from ", ts.world_size, " to ", dp_size_, " ranks");
        pos.rows = -1;
      }
      source->seek(pos);
      epoch_ = pos.epoch;
      resumed = true;
      log_info("resumed from ", dir, ": step ", step_, ", ", pos.str());
    }
  }

  std::string out_dir = cfg_.get_string("train.out_dir");
  std::filesystem::create_directories(out_dir);
  std::string metrics_path = cfg_.get_string("train.metrics_file");
  if (metrics_path.empty()) metrics_path = out_dir + "/metrics.jsonl";
  // Rank 0 writes every file and line of the run; the other ranks only compute.
  const bool lead = dp_rank_ == 0 && tp_rank_ == 0;
  std::ofstream metrics_file;
  if (lead) {
    metrics_file.open(metrics_path, resumed ? std::ios::app : std::ios::trunc);
    if (!metrics_file) throw DataError("[train] metrics_file: cannot write '" + metrics_path + "'");
  }

  log_info("model ", model_->config().type, ": ", parameter_count(params_), " parameters; ", steps_per_epoch,
           " steps per epoch of batch ", batch_size_, ", ", total_steps, " steps");

  TrainSummary summary;
  ProgressLine progress(lead ? stderr : nullptr, total_steps, std::max<int64_t>(1, total_steps / 20));
  Timing& t = *timing_;
  auto start = std::chrono::steady_clock::now();
  auto evaluate_and_log = [&](const data::Batch& data, const char* split) {
    EvalResult r = evaluate(data);
    progress.interrupt();
    log_info("step ", step_, ": ", split, " auc=", json_number(r.auc), " logloss=", json_number(r.logloss));
    if (lead)
      metrics_file << "{\"step\": " << step_ << ", \"epoch\": " << (steps_per_epoch ? step_ / steps_per_epoch : 0)
                 << ", \"split\": \"" << split << "\", \"auc\": " << json_number(r.auc)
                 << ", \"logloss\": " << json_number(r.logloss) << ", \"rows\": " << r.rows
                 << ", \"train_loss\": " << json_number(summary.last_loss) << "}\n";
    metrics_file.flush();
    return r;
  };

  const std::vector<ModelParallel::StateKind> state_kinds =
      mp_ ? optimizer_state_kinds(cfg_) : std::vector<ModelParallel::StateKind>{};
  auto checkpoint = [&]() {
    CheckpointContents c;
    c.params = &params_;
    c.optimizer_state = optimizer_->state();
    c.trainer.step = step_;
    c.trainer.loader_position = source->position().str();
    c.trainer.global_batch = batch_size_;
    c.world_size = dp_size_;
    c.trainer.model_seed = model_->config().seed;
    c.trainer.last_loss = summary.last_loss;
    if (const DynamicLossScaler* s = timing_->scaler.get()) {
      c.trainer.loss_scale = s->scale();
      c.trainer.loss_scale_good_steps = s->good_steps_in_a_row();
      c.trainer.loss_scale_skipped = s->skipped_steps();
    }
    c.trainer.sharding = mp_ ? "embedding_sharding=" + cfg_.get_string("parallel.embedding_sharding") +
                                   " tensor_parallel=" + std::to_string(cfg_.get_int("parallel.tensor_parallel"))
                             : std::string("replicated");
    c.config_dump = cfg_.dump();
    ScopedPhase p(t.timers, t.checkpoint);
    // Model parallelism: every rank takes part in gathering the full weights and state (collectives).
    std::map<std::string, Tensor> full_params, full_state;
    std::vector<Parameter> full;
    ParameterList full_list;
    if (mp_) {
      full_params = mp_->gather_full_parameters(params_);
      full_state = mp_->gather_full_state(params_, optimizer_->state(), state_kinds);
      full.resize(full_params.size());
      size_t i = 0;
      for (auto& [name, value] : full_params) {
        full[i].name = name;
        full[i].value = value;
        full_list.push_back(&full[i++]);
      }
      c.params = &full_list;
      c.optimizer_state.clear();
      for (auto& [name, value] : full_state) c.optimizer_state.emplace_back(name, &value);
    }
    // Replicated weights and optimizer state are the same on every rank: rank 0 writes them.
    if (!lead) return;
    std::string dir = save_checkpoint(ckpt_root, c, ckpt_keep);
    progress.interrupt();
    log_info("checkpoint ", dir);
  };

  data::Batch batch;
  bool done = max_steps > 0 && step_ >= max_steps;
  bool positioned = resumed;  // seek() already placed the source inside epoch_
  for (; !done && (max_steps > 0 || epoch_ < epochs); ++epoch_) {
    if (!positioned) source->start_epoch(epoch_);
    positioned = false;
    int64_t rows_this_epoch = 0;
    while (!done) {
      bool got;
      {
        ScopedPhase p(t.timers, t.data);
        RF_NVTX_RANGE("data wait");
        got = source->next(batch);
      }
      if (!got) break;
      maybe_inject_fault(dp_rank_, step_);
      int64_t global_rows = 0;
      summary.last_loss = train_step_local(batch, dp_size_ == 1 ? batch.size() : -1, &global_rows);
      if (!std::isfinite(summary.last_loss)) {
        progress.interrupt();
        throw Error("training diverged at step " + std::to_string(step_) + ": loss is " +
                    std::to_string(summary.last_loss) + "; lower [optimizer] lr");
      }
      summary.samples += global_rows;
      rows_this_epoch += global_rows;
      progress.update(step_, global_rows, summary.last_loss);
      if (max_steps > 0 && step_ >= max_steps) done = true;
      if (!ckpt_root.empty() && ckpt_every > 0 && step_ % ckpt_every == 0 && !done) checkpoint();
      if (eval_every > 0 && step_ % eval_every == 0 && periodic.size() > 0 && !done)
        evaluate_and_log(periodic, periodic_name);
    }
    if (rows_this_epoch == 0 && !resumed) throw DataError("[data] train: '" + train_path + "' has no rows");
    if (done) break;  // keep epoch_ pointing at the epoch of the next batch
  }
  if (!ckpt_root.empty()) checkpoint();
  progress.finish();
  summary.steps = step_;
  summary.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  std::string skipped = source->bad_rows_summary();
  if (!skipped.empty()) log_warn(train_path, ": ", skipped);

  // Model parallelism: sharded parameters are gathered in full (a collective) for the file.
  std::vector<Parameter> full;
  if (mp_)
    for (auto& [name, value] : mp_->gather_full_parameters(params_)) {
      full.emplace_back();
      full.back().name = name;
      full.back().value = value;
    }
  if (lead && mp_) {
    ParameterList l;
    for (Parameter& p : full) l.push_back(&p);
    save_parameters(out_dir + "/params.h5", l);
    // The export needs the unsharded model: rank 0 builds one from the gathered tensors (so it must
    // hold the full tables while it writes them, as the export file itself does).
    ModelConfig unsharded = model_->config();
    unsharded.parallel = nullptr;
    unsharded.device = Device::cpu();
    std::unique_ptr<Model> whole = make_model(unsharded);
    load_parameters(out_dir + "/params.h5", whole->parameters());
    serve::write_export(out_dir + "/model.h5", *whole, schema, serve::Quantize::kNone);
  } else if (lead) {
    save_parameters(out_dir + "/params.h5", params_);
    // The serving export (docs/export_format.md), written at the end of every run.
    serve::write_export(out_dir + "/model.h5", *model_, schema, serve::Quantize::kNone);
  }
  if (test.size() > 0) {
    summary.test = evaluate_and_log(test, "test");
    summary.evaluated = true;
  }
  if (!lead) return summary;
  std::fprintf(stderr, "\n%s", t.timers.table(summary.steps).c_str());
  std::fprintf(stderr, "trained %lld samples in %.2f s: %.0f samples/s\n", static_cast<long long>(summary.samples),
               summary.seconds, summary.seconds > 0 ? summary.samples / summary.seconds : 0.0);
  if (summary.evaluated)
    std::printf("test auc=%.5f logloss=%.5f\n", summary.test.auc, summary.test.logloss);
  std::fflush(stdout);
  return summary;
}

}  // namespace rf
