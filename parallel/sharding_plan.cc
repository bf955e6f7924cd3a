// The greedy sharding planner and the shard gather (see sharding_plan.h).
#include "parallel/sharding_plan.h"

#include <algorithm>
#include <cstdio>
#include <cstring>
#include <numeric>
#include <sstream>

#include "src/core/error.h"

namespace rf {

const char* sharding_kind_name(ShardingKind k) {
  switch (k) {
    case ShardingKind::kReplicated: return "replicated";
    case ShardingKind::kTable: return "table";
    case ShardingKind::kRow: return "row";
    case ShardingKind::kColumn: return "column";
  }
  return "?";
}

ShardingKind parse_sharding_kind(const std::string& name, const std::string& key) {
  if (name == "replicated") return ShardingKind::kReplicated;
  if (name == "table") return ShardingKind::kTable;
  if (name == "row") return ShardingKind::kRow;
  if (name == "column") return ShardingKind::kColumn;
  throw ConfigError(key + ": expected replicated, table, row or column, got '" + name + "'");
}

std::map<int, ShardingKind> parse_table_overrides(const std::string& text, int num_tables, const std::string& key) {
  std::map<int, ShardingKind> out;
  std::stringstream ss(text);
  std::string item;
  while (std::getline(ss, item, ',')) {
    if (item.empty()) continue;
    size_t colon = item.find(':');
    if (colon == std::string::npos || colon == 0)
      throw ConfigError(key + ": expected table:mode entries like 3:row, got '" + item + "'");
    int t = -1;
    try {
      size_t used = 0;
      t = std::stoi(item.substr(0, colon), &used);
      if (used != colon) t = -1;
    } catch (const std::exception&) {
      t = -1;
    }
    if (t < 0 || t >= num_tables)
      throw ConfigError(key + ": '" + item + "' names no table (the model has " + std::to_string(num_tables) +
                        ", numbered from 0)");
    out[t] = parse_sharding_kind(item.substr(colon + 1), key);
  }
  return out;
}

bool ShardingPlan::all_replicated() const {
  for (const TablePlacement& p : placement)
    if (p.kind != ShardingKind::kReplicated) return false;
  return true;
}

const ShardPiece* ShardingPlan::piece(int t, int rank) const {
  for (const ShardPiece& p : placement[static_cast<size_t>(t)].pieces)
    if (p.rank == rank) return &p;
  return nullptr;
}

namespace {

double mib(int64_t bytes) { return static_cast<double>(bytes) / (1024.0 * 1024.0); }

// Contiguous near-equal blocks of n over `world` ranks; ranks whose block is empty hold nothing.
std::vector<std::pair<int64_t, int64_t>> blocks(int64_t n, int world) {
  std::vector<std::pair<int64_t, int64_t>> out;
  for (int r = 0; r < world; ++r) out.emplace_back(n * r / world, n * (r + 1) / world);
  return out;
}

}  // namespace

ShardingPlan plan_sharding(const std::vector<TableSpec>& tables, const PlannerOptions& opts) {
  RF_CHECK(opts.world >= 1, "plan_sharding: world ", opts.world);
  const int W = opts.world;
  ShardingPlan plan;
  plan.world = W;
  plan.tables = tables;
  plan.budget_bytes = opts.budget_bytes;
  plan.state_floats_per_row = opts.state_floats_per_row;
  plan.placement.resize(tables.size());
  plan.param_bytes.assign(static_cast<size_t>(W), 0);
  plan.state_bytes.assign(static_cast<size_t>(W), 0);
  plan.lookups.assign(static_cast<size_t>(W), 0.0);
  ShardingKind fixed = ShardingKind::kReplicated;
  const bool automatic = opts.mode == "auto";
  if (!automatic) fixed = parse_sharding_kind(opts.mode, "[parallel] embedding_sharding");

  auto piece_bytes = [&](int64_t rows, int64_t cols, int64_t* param, int64_t* state) {
    *param = rows * cols * static_cast<int64_t>(sizeof(float));
    *state = rows * opts.state_floats_per_row * static_cast<int64_t>(sizeof(float));
  };
  auto add = [&](int rank, int64_t rows, int64_t cols, double lookups) {
    int64_t pb, sb;
    piece_bytes(rows, cols, &pb, &sb);
    plan.param_bytes[static_cast<size_t>(rank)] += pb;
    plan.state_bytes[static_cast<size_t>(rank)] += sb;
    plan.lookups[static_cast<size_t>(rank)] += lookups;
  };

  // Largest tables first (ties: lower index), so the greedy balance places the big ones while every
  // rank still has room.
  std::vector<size_t> order(tables.size());
  std::iota(order.begin(), order.end(), 0);
  auto full_bytes = [&](size_t t) {
    int64_t pb, sb;
    piece_bytes(tables[t].rows, tables[t].dim, &pb, &sb);
    return pb + sb;
  };
  std::stable_sort(order.begin(), order.end(), [&](size_t a, size_t b) { return full_bytes(a) > full_bytes(b); });

  for (size_t t : order) {
    const TableSpec& spec = tables[t];
    TablePlacement& pl = plan.placement[t];
    auto it = opts.overrides.find(static_cast<int>(t));
    ShardingKind kind = it != opts.overrides.end() ? it->second : fixed;
    bool chosen = it != opts.overrides.end() || !automatic;
    if (!chosen) {
      int64_t bytes = full_bytes(t);
      kind = ShardingKind::kTable;
      if (opts.budget_bytes > 0 && W > 1 &&
          static_cast<double>(bytes) > opts.row_wise_share * static_cast<double>(opts.budget_bytes))
        kind = ShardingKind::kRow;
      if (W == 1) kind = ShardingKind::kTable;
    }
    if (kind == ShardingKind::kTable) {
      int best = 0;  // the least-loaded rank; ties go to the lower rank
      for (int r = 1; r < W; ++r)
        if (plan.bytes(r) < plan.bytes(best)) best = r;
      // auto: a table that does not fit whole where it would go is split by rows instead.
      if (!chosen && W > 1 && opts.budget_bytes > 0 && plan.bytes(best) + full_bytes(t) > opts.budget_bytes)
        kind = ShardingKind::kRow;
      else {
        pl.pieces.push_back({best, 0, spec.rows, 0, spec.dim});
        add(best, spec.rows, spec.dim, spec.lookups);
      }
    }
    pl.kind = kind;
    if (kind == ShardingKind::kReplicated) {
      for (int r = 0; r < W; ++r) add(r, spec.rows, spec.dim, spec.lookups);
    } else if (kind == ShardingKind::kRow) {
      auto b = blocks(spec.rows, W);
      for (int r = 0; r < W; ++r) {
        if (b[r].second == b[r].first) continue;
        pl.pieces.push_back({r, b[r].first, b[r].second, 0, spec.dim});
        add(r, b[r].second - b[r].first, spec.dim,
            spec.lookups * static_cast<double>(b[r].second - b[r].first) / static_cast<double>(spec.rows));
      }
    } else if (kind == ShardingKind::kColumn) {
      auto b = blocks(spec.dim, W);
      for (int r = 0; r < W; ++r) {
        if (b[r].second == b[r].first) continue;
        pl.pieces.push_back({r, 0, spec.rows, b[r].first, b[r].second});
        add(r, spec.rows, b[r].second - b[r].first, spec.lookups);
      }
    }
  }

  if (opts.budget_bytes > 0) {
    int worst = 0;
    for (int r = 1; r < W; ++r)
      if (plan.bytes(r) > plan.bytes(worst)) worst = r;
    if (plan.bytes(worst) > opts.budget_bytes) {
      int64_t total = 0;
      for (size_t t = 0; t < tables.size(); ++t) total += full_bytes(t);
      char msg[512];
      std::snprintf(msg, sizeof msg,
                    "[parallel] memory_budget_mb: the embedding plan does not fit: rank %d needs %.2f MiB "
                    "(parameters %.2f MiB + optimizer state %.2f MiB) but the budget is %.2f MiB per rank; "
                    "the %zu tables take %.2f MiB in all over %d rank(s) (mode %s). Raise memory_budget_mb, "
                    "add ranks, or shard the largest tables by row.",
                    worst, mib(plan.bytes(worst)), mib(plan.param_bytes[static_cast<size_t>(worst)]),
                    mib(plan.state_bytes[static_cast<size_t>(worst)]), mib(opts.budget_bytes), tables.size(),
                    mib(total), W, opts.mode.c_str());
      throw ConfigError(msg);
    }
  }
  return plan;
}

std::string ShardingPlan::describe() const {
  std::ostringstream os;
  char line[256];
  std::snprintf(line, sizeof line, "embedding sharding plan over %d rank(s)%s\n", world,
                budget_bytes > 0 ? "" : " (no memory budget)");
  os << line;
  std::snprintf(line, sizeof line, "%6s %12s %5s %11s  %s\n", "table", "rows", "dim", "sharding", "pieces (rank: rows x cols)");
  os << line;
  for (size_t t = 0; t < tables.size(); ++t) {
    std::ostringstream pieces;
    for (const ShardPiece& p : placement[t].pieces)
      pieces << " " << p.rank << ":[" << p.row_begin << "," << p.row_end << ")x[" << p.col_begin << "," << p.col_end << ")";
    if (placement[t].kind == ShardingKind::kReplicated) pieces << " every rank";
    std::snprintf(line, sizeof line, "%6zu %12lld %5lld %11s ", t, static_cast<long long>(tables[t].rows),
                  static_cast<long long>(tables[t].dim), sharding_kind_name(placement[t].kind));
    os << line << pieces.str() << "\n";
  }
  for (int r = 0; r < world; ++r) {
    std::snprintf(line, sizeof line,
                  "plan rank %d: %.3f MiB (parameters %lld bytes + optimizer state %lld bytes = %lld bytes), "
                  "%.2f lookups per sample%s\n",
                  r, mib(bytes(r)), static_cast<long long>(param_bytes[static_cast<size_t>(r)]),
                  static_cast<long long>(state_bytes[static_cast<size_t>(r)]), static_cast<long long>(bytes(r)),
                  lookups[static_cast<size_t>(r)], budget_bytes > 0 ? "" : "");
    os << line;
  }
  if (budget_bytes > 0) {
    std::snprintf(line, sizeof line, "budget %.3f MiB per rank\n", mib(budget_bytes));
    os << line;
  }
  return os.str();
}

Tensor gather_shards_2d(Communicator& comm, const Tensor& local, int64_t row_begin, int64_t col_begin,
                        int64_t full_rows, int64_t full_cols) {
  int64_t rows = 0, cols = 0;
  if (local.defined() && local.numel() > 0) {
    check_dtype(local, DType::kF32, "gather_shards_2d");
    rows = local.size(0);
    cols = local.dim() == 2 ? local.size(1) : 1;
  }
  Tensor header = Tensor::from_vector<int64_t>({rows, cols, row_begin, col_begin}, {4});
  Tensor headers = Tensor::empty({4 * static_cast<int64_t>(comm.size())}, DType::kI64);
  comm.all_gather(header, headers);
  Tensor mine = rows * cols > 0 ? local.to(Device::cpu()).view({rows * cols}) : Tensor::empty({0}, DType::kF32);
  std::vector<int64_t> counts;
  Tensor all = comm.all_gather_v(mine, &counts);
  Tensor full = Tensor::zeros(full_cols == 1 ? Shape{full_rows} : Shape{full_rows, full_cols}, DType::kF32);
  std::vector<bool> filled(static_cast<size_t>(full_rows * full_cols), false);
  const int64_t* h = headers.data<int64_t>();
  const float* src = all.data<float>();
  float* dst = full.data<float>();
  int64_t offset = 0;
  for (int r = 0; r < comm.size(); ++r) {
    int64_t pr = h[4 * r], pc = h[4 * r + 1], r0 = h[4 * r + 2], c0 = h[4 * r + 3];
    RF_CHECK(r0 >= 0 && c0 >= 0 && r0 + pr <= full_rows && c0 + pc <= full_cols, "gather_shards_2d: rank ", r,
             "'s block [", r0, "+", pr, ", ", c0, "+", pc, ") lies outside [", full_rows, ", ", full_cols, "]");
    for (int64_t i = 0; i < pr; ++i)
      for (int64_t j = 0; j < pc; ++j) {
        size_t k = static_cast<size_t>((r0 + i) * full_cols + c0 + j);
        if (!filled[k]) dst[k] = src[offset + i * pc + j];
        filled[k] = true;
      }
    offset += counts[static_cast<size_t>(r)];
  }
  for (size_t k = 0; k < filled.size(); ++k)
    RF_CHECK(filled[k], "gather_shards_2d: element ", k, " of the [", full_rows, ", ", full_cols, "] tensor is held by no rank");
  return full;
}

}  // namespace rf
