// Sharded embedding tables (see sharded_embedding.h). Message layout, the same for every exchange:
// what rank s sends rank d is, for each piece d holds (in table order, pieces_of(d)), one block for
// s's samples. Index messages carry [batch of s] bag lengths then the bags' piece-local rows; pooled
// and gradient messages carry [batch of s, piece cols] floats. Owners pool with kSum and the
// requester applies the mean, because a row-wise owner sees only part of each bag.
#include "src/model/sharded_embedding.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstring>

#include "kernels/concat.h"
#include "kernels/loss_scaler.h"
#include "src/core/error.h"

namespace rf {

namespace {

Sharding param_sharding(ShardingKind k) {
  switch (k) {
    case ShardingKind::kRow: return Sharding::kRowSharded;
    case ShardingKind::kColumn: return Sharding::kColumnSharded;
    case ShardingKind::kTable: return Sharding::kTableSharded;
    default: return Sharding::kReplicated;
  }
}

Tensor i64_tensor(const std::vector<int64_t>& v) {
  Tensor t = Tensor::empty({static_cast<int64_t>(v.size())}, DType::kI64);
  if (!v.empty()) std::memcpy(t.data<int64_t>(), v.data(), v.size() * sizeof(int64_t));
  return t;
}

int64_t total(const std::vector<int64_t>& v) {
  int64_t s = 0;
  for (int64_t x : v) s += x;
  return s;
}

// An all_to_all_v over `comm`, timed into the model's counters. `in` moves to the communicator's
// device when it lives elsewhere; the result ([max(1, received)] elements) is returned on `out_device`.
Tensor exchange(ModelParallel& mp, Communicator& comm, const Tensor& in, const std::vector<int64_t>& send,
                const std::vector<int64_t>& recv, Device out_device) {
  auto t0 = std::chrono::steady_clock::now();
  Tensor out = Tensor::empty({std::max<int64_t>(1, total(recv))}, in.dtype(), comm.device());
  comm.all_to_all_v(in.on(comm.device()), send, out, recv);
  mp.a2a.seconds += std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  for (int64_t c : send) mp.a2a.bytes += c * static_cast<int64_t>(dtype_size(in.dtype()));
  ++mp.a2a.calls;
  return out.on(out_device);
}

// The 1-D concatenation of `parts` (each viewed as one row) on `device`, [max(1, total)] elements:
// the send buffer of an all-to-all, packed where the parts live.
Tensor pack(const std::vector<Tensor>& parts, Device device) {
  std::vector<Tensor> rows;
  int64_t n = 0;
  for (const Tensor& p : parts)
    if (p.numel() > 0) {
      rows.push_back(p.view({1, p.numel()}));
      n += p.numel();
    }
  Tensor out = Tensor::empty({std::max<int64_t>(1, n)}, DType::kF32, device);
  if (n > 0) {
    Tensor as_row = out.view({1, n});
    concat_columns(rows, as_row);
  }
  return out;
}

// Mean pooling over sharded tables, as the kernel does it: host rows b = 0..B-1 of `width` floats,
// `stride` apart, times 1 / (bag b's length); an empty bag's row (zero in the forward) times 0.
void scale_by_inverse_bag_length(float* x, int64_t stride, int64_t width, const int64_t* off, int64_t B) {
  for (int64_t b = 0; b < B; ++b) {
    const int64_t len = off[b + 1] - off[b];
    const float scale = len > 0 ? 1.0f / static_cast<float>(len) : 0.0f;
    float* row = x + b * stride;
    for (int64_t c = 0; c < width; ++c) row[c] = scale * row[c];
  }
}

// Elements [offset, offset + rows * cols) of a 1-D tensor as [rows, cols].
Tensor block(const Tensor& flat, int64_t offset, int64_t rows, int64_t cols) {
  return flat.slice_rows(offset, offset + rows * cols).view({rows, cols});
}

}  // namespace

ShardedEmbeddingCollection::ShardedEmbeddingCollection(const std::vector<int64_t>& table_sizes, int64_t dim,
                                                       PoolMode mode, ModelParallel* mp)
    : sizes_(table_sizes), dim_(dim), mode_(mode), mp_(mp) {
  if (!mp_ || !mp_->plan()) {
    local_.emplace(table_sizes, dim, mode);
    return;
  }
  plan_ = mp_->plan();
  const int W = comm().size(), me = comm().rank();
  // Row-wise optimizer state over column shards needs the full rows' statistics (exchange_full_row_sums).
  for (const TablePlacement& pl : plan_->placement)
    has_column_tables_ = has_column_tables_ || (pl.kind == ShardingKind::kColumn && plan_->state_floats_per_row > 0);
  RF_CHECK(plan_->tables.size() == sizes_.size(), "sharding plan has ", plan_->tables.size(), " tables, the model ",
           sizes_.size());
  by_rank_.resize(static_cast<size_t>(W));
  param_of_table_.assign(sizes_.size(), -1);
  params_.reserve(sizes_.size());  // Parameter* handed out by collect() must stay put
  for (size_t t = 0; t < sizes_.size(); ++t) {
    RF_CHECK(plan_->tables[t].rows == sizes_[t] && plan_->tables[t].dim == dim_, "sharding plan: table ", t, " is [",
             plan_->tables[t].rows, ", ", plan_->tables[t].dim, "], the model's [", sizes_[t], ", ", dim_, "]");
    const TablePlacement& pl = plan_->placement[t];
    for (const ShardPiece& p : pl.pieces) by_rank_[static_cast<size_t>(p.rank)].emplace_back(static_cast<int>(t), p);
    Parameter prm;
    prm.name = "embeddings." + std::to_string(t) + ".weight";
    prm.sparse = true;
    prm.full_rows = sizes_[t];
    prm.full_cols = dim_;
    const ShardPiece* mine = plan_->piece(static_cast<int>(t), me);
    if (pl.kind == ShardingKind::kReplicated) {
      prm.value = Tensor::zeros({sizes_[t], dim_}, DType::kF32);
    } else if (mine) {
      prm.value = Tensor::zeros({mine->rows(), mine->cols()}, DType::kF32);
      prm.sharding = param_sharding(pl.kind);
      prm.row_begin = mine->row_begin;
      prm.col_begin = mine->col_begin;
      owned_.push_back({static_cast<int>(t), *mine, {}, {}});
    }
    if (prm.value.defined()) {
      param_of_table_[t] = static_cast<int>(params_.size());
      params_.push_back(std::move(prm));
    }
    if (pl.kind != ShardingKind::kReplicated)
      mp_->register_shard({"embeddings." + std::to_string(t) + ".weight", &comm(),
                           param_of_table_[t] >= 0 ? &params_.back() : nullptr, sizes_[t], dim_, true});
  }
}

void ShardedEmbeddingCollection::init(InitRng& rng) {
  if (local_) return local_->init(rng);
  for (size_t t = 0; t < sizes_.size(); ++t) {
    const int64_t rows = sizes_[t];
    const double bound = std::sqrt(1.0 / static_cast<double>(rows));
    const int pi = param_of_table_[t];
    if (pi < 0) {  // keep the stream where the single-process init would have it
      for (int64_t k = 0; k < rows * dim_; ++k) rng.uniform();
      continue;
    }
    Parameter& p = params_[static_cast<size_t>(pi)];
    const int64_t r0 = p.row_begin, c0 = p.col_begin, nr = p.value.size(0), nc = p.value.size(1);
    float* w = p.value.data<float>();
    for (int64_t i = 0; i < rows; ++i)
      for (int64_t j = 0; j < dim_; ++j) {
        float v = static_cast<float>((2.0 * rng.uniform() - 1.0) * bound);
        if (i >= r0 && i < r0 + nr && j >= c0 && j < c0 + nc) w[(i - r0) * nc + (j - c0)] = v;
      }
  }
}

void ShardedEmbeddingCollection::forward(const std::vector<Tensor>& indices, const std::vector<Tensor>& offsets,
                                         Tensor& pooled) {
  if (local_) return local_->forward(indices, offsets, pooled);
  const int64_t T = num_tables();
  RF_CHECK(static_cast<int64_t>(indices.size()) == T && static_cast<int64_t>(offsets.size()) == T,
           "embedding collection has ", T, " tables, batch has ", indices.size(), " categorical features");
  const int64_t B = offsets.empty() ? 0 : offsets[0].numel() - 1;
  check_shape(pooled, {B, T, dim_}, "pooled embeddings");
  const Device dev = pooled.device();
  const int W = comm().size();

  // Every rank's batch size, so owners know how many bags each message holds.
  Tensor b1 = Tensor::from_vector<int64_t>({B}, {1});
  Tensor bs = Tensor::empty({W}, DType::kI64);
  comm().all_gather(b1, bs);
  batches_ = bs.to_vector<int64_t>();

  // Indices out (routed on the host, exchanged over the host group): for each destination, for each
  // piece it holds, [B] lengths then the piece's rows.
  std::vector<Tensor> host_idx(static_cast<size_t>(T)), host_off(static_cast<size_t>(T));
  for (int64_t t = 0; t < T; ++t)
    if (plan_->placement[static_cast<size_t>(t)].kind != ShardingKind::kReplicated) {
      host_idx[static_cast<size_t>(t)] = indices[static_cast<size_t>(t)].on(Device::cpu());
      host_off[static_cast<size_t>(t)] = offsets[static_cast<size_t>(t)].on(Device::cpu());
    }
  std::vector<int64_t> send;
  std::vector<int64_t> send_counts(static_cast<size_t>(W), 0);
  for (int d = 0; d < W; ++d) {
    size_t start = send.size();
    for (const auto& [t, p] : pieces_of(d)) {
      const int64_t* idx = host_idx[static_cast<size_t>(t)].data<int64_t>();
      const int64_t* off = host_off[static_cast<size_t>(t)].data<int64_t>();
      const int64_t rows = sizes_[static_cast<size_t>(t)];
      size_t lengths = send.size();
      send.resize(send.size() + static_cast<size_t>(B));
      for (int64_t b = 0; b < B; ++b) {
        int64_t n = 0;
        for (int64_t k = off[b]; k < off[b + 1]; ++k) {
          int64_t r = idx[k];
          if (r < 0 || r >= rows)
            throw DataError("embedding table " + std::to_string(t) + ": bag " + std::to_string(b) + " looks up row " +
                            std::to_string(r) + ", the table has " + std::to_string(rows));
          if (r >= p.row_begin && r < p.row_end) {
            send.push_back(r - p.row_begin);
            ++n;
          }
        }
        send[lengths + static_cast<size_t>(b)] = n;
      }
    }
    send_counts[static_cast<size_t>(d)] = static_cast<int64_t>(send.size() - start);
  }
  std::vector<int64_t> ones(static_cast<size_t>(W), 1);
  Tensor counts_in = exchange(*mp_, comm(), i64_tensor(send_counts), ones, ones, Device::cpu());
  std::vector<int64_t> recv_counts = counts_in.to_vector<int64_t>();
  Tensor recv_t = exchange(*mp_, comm(), i64_tensor(send), send_counts, recv_counts, Device::cpu());

  // Owners: every source's bags, in rank order, into one bag list per piece; pool each with kSum.
  const int64_t all_bags = total(batches_);
  for (Owned& o : owned_) {
    o.offsets.assign(1, 0);
    o.offsets.reserve(static_cast<size_t>(all_bags + 1));
    o.rows.clear();
  }
  const int64_t* rv = recv_t.data<int64_t>();
  int64_t pos = 0;
  for (int s = 0; s < W; ++s) {
    const int64_t bsz = batches_[static_cast<size_t>(s)];
    for (Owned& o : owned_) {
      const int64_t* len = rv + pos;
      int64_t n = 0;
      for (int64_t b = 0; b < bsz; ++b) {
        n += len[b];
        o.offsets.push_back(o.offsets.back() + len[b]);
      }
      o.rows.insert(o.rows.end(), rv + pos + bsz, rv + pos + bsz + n);
      pos += bsz + n;
    }
  }
  std::vector<Tensor> outs;  // per owned piece: [all_bags, cols] on the tables' device
  for (Owned& o : owned_) {
    Tensor out = Tensor::empty({all_bags, o.piece.cols()}, DType::kF32, dev);
    embedding_bag_forward(params_[static_cast<size_t>(param_of_table_[static_cast<size_t>(o.table)])].value,
                          i64_tensor(o.rows).on(dev), i64_tensor(o.offsets).on(dev), PoolMode::kSum, out);
    outs.push_back(out);
  }

  // Pooled blocks back: to source s, per owned piece, the rows of s's bags.
  std::vector<int64_t> back_counts(static_cast<size_t>(W), 0), in_counts(static_cast<size_t>(W), 0);
  std::vector<Tensor> back_parts;
  int64_t first_bag = 0;
  for (int s = 0; s < W; ++s) {
    const int64_t bsz = batches_[static_cast<size_t>(s)];
    for (size_t k = 0; k < owned_.size(); ++k) {
      back_counts[static_cast<size_t>(s)] += bsz * owned_[k].piece.cols();
      back_parts.push_back(outs[k].slice_rows(first_bag, first_bag + bsz));
    }
    first_bag += bsz;
  }
  for (int d = 0; d < W; ++d)
    for (const auto& [t, p] : pieces_of(d)) in_counts[static_cast<size_t>(d)] += B * p.cols();
  Communicator& payload = mp_->embedding_payload_comm();
  Tensor got = exchange(*mp_, payload, pack(back_parts, dev), back_counts, in_counts, dev);

  // Requester: [B, T * dim] as one column block per table (replicated tables pooled here, table-wise
  // pieces as received, column-wise pieces side by side, row-wise partial sums added in rank order so
  // every rank and every run adds them the same way).
  std::vector<std::vector<std::pair<int64_t, Tensor>>> received(static_cast<size_t>(T));  // (col_begin, block)
  int64_t g = 0;
  for (int d = 0; d < W; ++d)
    for (const auto& [t, p] : pieces_of(d)) {
      received[static_cast<size_t>(t)].emplace_back(p.col_begin, block(got, g, B, p.cols()));
      g += B * p.cols();
    }
  if (B == 0) return;
  std::vector<Tensor> columns;
  for (int64_t t = 0; t < T; ++t) {
    const ShardingKind kind = plan_->placement[static_cast<size_t>(t)].kind;
    auto& parts = received[static_cast<size_t>(t)];
    if (kind == ShardingKind::kReplicated) {
      Tensor out = Tensor::empty({B, dim_}, DType::kF32, dev);
      embedding_bag_forward(params_[static_cast<size_t>(param_of_table_[static_cast<size_t>(t)])].value,
                            indices[static_cast<size_t>(t)], offsets[static_cast<size_t>(t)], mode_, out);
      columns.push_back(out);
    } else if (kind == ShardingKind::kRow) {
      Tensor sum = parts[0].second;
      for (size_t i = 1; i < parts.size(); ++i) {
        Tensor next = Tensor::empty({B, dim_}, DType::kF32, dev);
        split_columns(parts[i].second, &sum, {next});  // next = part_i + sum
        sum = next;
      }
      columns.push_back(sum);
    } else {
      std::sort(parts.begin(), parts.end(), [](const auto& x, const auto& y) { return x.first < y.first; });
      for (auto& [c0, blk] : parts) columns.push_back(blk);
    }
  }
  Tensor flat = pooled.view({B, T * dim_});
  concat_columns(columns, flat);
  if (mode_ == PoolMode::kMean) {
    RF_CHECK(dev.is_cpu(), "sharded tables with mean pooling run on the CPU only so far");
    for (int64_t t = 0; t < T; ++t)
      if (plan_->placement[static_cast<size_t>(t)].kind != ShardingKind::kReplicated)
        scale_by_inverse_bag_length(pooled.data<float>() + t * dim_, T * dim_, dim_,
                                    host_off[static_cast<size_t>(t)].data<int64_t>(), B);
  }
}

void ShardedEmbeddingCollection::backward(const std::vector<Tensor>& indices, const std::vector<Tensor>& offsets,
                                          const Tensor& grad_pooled, const EmbeddingUpdate* update) {
  if (local_) return local_->backward(indices, offsets, grad_pooled, update);
  const int64_t T = num_tables();
  const int64_t B = grad_pooled.size(0);
  const int W = comm().size();
  const Device dev = grad_pooled.device();
  RF_CHECK(B == batches_[static_cast<size_t>(comm().rank())], "sharded embedding backward: batch ", B,
           ", the last forward had ", batches_[static_cast<size_t>(comm().rank())]);

  // [B, T * dim] -> one [B, dim] gradient block per table (mean: times 1/length, as the owner sums).
  std::vector<Tensor> per_table;
  for (int64_t t = 0; t < T; ++t) per_table.push_back(Tensor::empty({B, dim_}, DType::kF32, dev));
  if (B > 0) split_columns(grad_pooled.view({B, T * dim_}), nullptr, per_table);
  if (mode_ == PoolMode::kMean) {
    RF_CHECK(dev.is_cpu(), "sharded tables with mean pooling run on the CPU only so far");
    for (int64_t t = 0; t < T; ++t)
      if (plan_->placement[static_cast<size_t>(t)].kind != ShardingKind::kReplicated)
        scale_by_inverse_bag_length(per_table[static_cast<size_t>(t)].data<float>(), dim_, dim_,
                                    offsets[static_cast<size_t>(t)].on(Device::cpu()).data<int64_t>(), B);
  }

  // Replicated tables: this rank's sparse gradient (the trainer merges it across ranks).
  for (int64_t t = 0; t < T; ++t) {
    if (plan_->placement[static_cast<size_t>(t)].kind != ShardingKind::kReplicated) continue;
    Parameter& p = params_[static_cast<size_t>(param_of_table_[static_cast<size_t>(t)])];
    p.sparse_grad = embedding_bag_backward(indices[static_cast<size_t>(t)], offsets[static_cast<size_t>(t)],
                                           per_table[static_cast<size_t>(t)], mode_, sizes_[static_cast<size_t>(t)]);
  }

  // Column-wise tables: the table's block split into its pieces' columns.
  std::vector<std::vector<Tensor>> column_parts(static_cast<size_t>(T));
  for (int64_t t = 0; t < T; ++t) {
    const TablePlacement& pl = plan_->placement[static_cast<size_t>(t)];
    if (pl.kind != ShardingKind::kColumn) continue;
    std::vector<const ShardPiece*> by_col;
    for (const ShardPiece& p : pl.pieces) by_col.push_back(&p);
    std::sort(by_col.begin(), by_col.end(), [](const ShardPiece* x, const ShardPiece* y) { return x->col_begin < y->col_begin; });
    std::vector<Tensor> parts;
    for (const ShardPiece* p : by_col) parts.push_back(Tensor::empty({B, p->cols()}, DType::kF32, dev));
    if (B > 0) split_columns(per_table[static_cast<size_t>(t)], nullptr, parts);
    column_parts[static_cast<size_t>(t)].resize(pl.pieces.size());
    for (size_t i = 0; i < by_col.size(); ++i)
      column_parts[static_cast<size_t>(t)][static_cast<size_t>(by_col[i] - pl.pieces.data())] = parts[i];
  }
  auto piece_grad = [&](int t, const ShardPiece& p) -> Tensor {
    const TablePlacement& pl = plan_->placement[static_cast<size_t>(t)];
    if (pl.kind != ShardingKind::kColumn) return per_table[static_cast<size_t>(t)];
    return column_parts[static_cast<size_t>(t)][static_cast<size_t>(&p - pl.pieces.data())];
  };

  // Pooled gradients to the owners.
  std::vector<int64_t> send_counts(static_cast<size_t>(W), 0), recv_counts(static_cast<size_t>(W), 0);
  std::vector<Tensor> send_parts;
  for (int d = 0; d < W; ++d)
    for (const auto& [t, p] : pieces_of(d)) {
      send_counts[static_cast<size_t>(d)] += B * p.cols();
      send_parts.push_back(piece_grad(t, *plan_->piece(t, d)));
    }
  for (int s = 0; s < W; ++s)
    for (const Owned& o : owned_) recv_counts[static_cast<size_t>(s)] += batches_[static_cast<size_t>(s)] * o.piece.cols();
  Tensor recv = exchange(*mp_, mp_->embedding_payload_comm(), pack(send_parts, dev), send_counts, recv_counts, dev);

  // Owners: one [all bags, cols] gradient per piece, sources in rank order (the bag order of the
  // forward), reduced to the piece's sparse gradient and averaged over the group.
  const int64_t all_bags = total(batches_);
  std::vector<std::vector<Tensor>> chunks(owned_.size());
  int64_t pos = 0;
  for (int s = 0; s < W; ++s) {
    const int64_t bsz = batches_[static_cast<size_t>(s)];
    for (size_t k = 0; k < owned_.size(); ++k) {
      chunks[k].push_back(block(recv, pos, bsz, owned_[k].piece.cols()));
      pos += bsz * owned_[k].piece.cols();
    }
  }
  for (size_t k = 0; k < owned_.size(); ++k) {
    const Owned& o = owned_[k];
    Tensor grads = pack(chunks[k], dev).slice_rows(0, all_bags * o.piece.cols()).view({all_bags, o.piece.cols()});
    Parameter& p = params_[static_cast<size_t>(param_of_table_[static_cast<size_t>(o.table)])];
    p.sparse_grad = embedding_bag_backward(i64_tensor(o.rows).on(dev), i64_tensor(o.offsets).on(dev), grads,
                                           PoolMode::kSum, o.piece.rows());
    // The data-parallel average. On the host divided (not multiplied by 1/W) as sync_sparse_grads does;
    // on a GPU multiplied by 1/W (the same for W a power of two).
    if (W == 1 || !p.sparse_grad.values.defined() || p.sparse_grad.values.numel() == 0) continue;
    if (dev.is_cpu()) {
      float* v = p.sparse_grad.values.data<float>();
      const float w = static_cast<float>(W);
      for (int64_t i = 0; i < p.sparse_grad.values.numel(); ++i) v[i] = v[i] / w;
    } else {
      unscale_and_check({&p.sparse_grad.values}, 1.0f / static_cast<float>(W));
    }
  }
  if (has_column_tables_) {
    RF_CHECK(dev.is_cpu(), "column-sharded tables with a row-wise sparse optimizer run on the CPU only so far");
    exchange_full_row_sums();
  }
}

// Every shard of a column-sharded table sees every lookup, so the shards' sparse gradients have the
// same rows in the same order; only their columns differ. Each owner sends its per-row partial sums
// (g*g, g*w, w*w over its columns) to the other owners of the table, and every owner adds the
// partials in rank order: the same full-row sums, bit for bit, on every shard.
void ShardedEmbeddingCollection::exchange_full_row_sums() {
  const int W = comm().size();
  auto holds = [&](int rank, int table) {
    for (const auto& [t, p] : pieces_of(rank))
      if (t == table) return true;
    return false;
  };
  auto is_column = [&](int t) { return plan_->placement[static_cast<size_t>(t)].kind == ShardingKind::kColumn; };
  // This rank's partials, per owned column piece: [unique, 3].
  std::vector<std::vector<float>> partial(owned_.size());
  for (size_t k = 0; k < owned_.size(); ++k) {
    if (!is_column(owned_[k].table)) continue;
    Parameter& p = params_[static_cast<size_t>(param_of_table_[static_cast<size_t>(owned_[k].table)])];
    const int64_t u = p.sparse_grad.rows.numel(), nc = p.value.size(1);
    const int64_t* r = p.sparse_grad.rows.data<int64_t>();
    const float* g = p.sparse_grad.values.data<float>();
    const float* w = p.value.data<float>();
    partial[k].assign(static_cast<size_t>(3 * u), 0.0f);
    for (int64_t i = 0; i < u; ++i) {
      float gg = 0.0f, gw = 0.0f, ww = 0.0f;
      for (int64_t c = 0; c < nc; ++c) {
        const float gc = g[i * nc + c], wc = w[r[i] * nc + c];
        gg += gc * gc;
        gw += gc * wc;
        ww += wc * wc;
      }
      partial[k][static_cast<size_t>(3 * i)] = gg;
      partial[k][static_cast<size_t>(3 * i + 1)] = gw;
      partial[k][static_cast<size_t>(3 * i + 2)] = ww;
    }
  }
  // To rank d: for each column piece held here (table order) whose table d also holds, its partials.
  // From rank s: for each column piece s holds whose table is held here, [unique of that table, 3].
  std::vector<int64_t> send_counts(static_cast<size_t>(W), 0), recv_counts(static_cast<size_t>(W), 0);
  std::vector<float> send;
  for (int d = 0; d < W; ++d) {
    const size_t start = send.size();
    for (size_t k = 0; k < owned_.size(); ++k)
      if (is_column(owned_[k].table) && holds(d, owned_[k].table))
        send.insert(send.end(), partial[k].begin(), partial[k].end());
    send_counts[static_cast<size_t>(d)] = static_cast<int64_t>(send.size() - start);
  }
  std::vector<size_t> piece_of_table(sizes_.size(), SIZE_MAX);
  for (size_t k = 0; k < owned_.size(); ++k) piece_of_table[static_cast<size_t>(owned_[k].table)] = k;
  for (int s = 0; s < W; ++s)
    for (const auto& [t, p] : pieces_of(s))
      if (is_column(t) && piece_of_table[static_cast<size_t>(t)] != SIZE_MAX)
        recv_counts[static_cast<size_t>(s)] += static_cast<int64_t>(partial[piece_of_table[static_cast<size_t>(t)]].size());
  Tensor send_t = Tensor::empty({std::max<int64_t>(1, static_cast<int64_t>(send.size()))}, DType::kF32);
  if (!send.empty()) std::memcpy(send_t.data<float>(), send.data(), send.size() * sizeof(float));
  Tensor recv_t = exchange(*mp_, comm(), send_t, send_counts, recv_counts, Device::cpu());
  // Sum in rank order into each owned column piece's full-row sums.
  std::vector<Tensor> full(owned_.size());
  for (size_t k = 0; k < owned_.size(); ++k)
    if (is_column(owned_[k].table))
      full[k] = Tensor::zeros({static_cast<int64_t>(partial[k].size() / 3), 3}, DType::kF32);
  const float* src = recv_t.data<float>();
  for (int s = 0; s < W; ++s)
    for (const auto& [t, p] : pieces_of(s)) {
      if (!is_column(t) || piece_of_table[static_cast<size_t>(t)] == SIZE_MAX) continue;
      Tensor& f = full[piece_of_table[static_cast<size_t>(t)]];
      float* dst = f.data<float>();
      for (int64_t i = 0; i < f.numel(); ++i) dst[i] += src[i];
      src += f.numel();
    }
  for (size_t k = 0; k < owned_.size(); ++k)
    if (is_column(owned_[k].table))
      params_[static_cast<size_t>(param_of_table_[static_cast<size_t>(owned_[k].table)])].full_row_sums = full[k];
}

void ShardedEmbeddingCollection::collect(ParameterList& out) {
  if (local_) return local_->collect(out);
  for (Parameter& p : params_) out.push_back(&p);
}

Tensor ShardedEmbeddingCollection::gather_full_table(int t) {
  if (local_) {
    ParameterList all;
    local_->collect(all);
    return all[static_cast<size_t>(t)]->value;
  }
  const int pi = param_of_table_[static_cast<size_t>(t)];
  if (plan_->placement[static_cast<size_t>(t)].kind == ShardingKind::kReplicated)
    return params_[static_cast<size_t>(pi)].value;
  Tensor none;
  const Parameter* p = pi >= 0 ? &params_[static_cast<size_t>(pi)] : nullptr;
  return gather_shards_2d(comm(), p ? p->value : none, p ? p->row_begin : 0, p ? p->col_begin : 0,
                          sizes_[static_cast<size_t>(t)], dim_);
}

}  // namespace rf
