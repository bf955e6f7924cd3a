// Sharding plans for large 2-D parameters (embedding tables) over a group of ranks: which rank holds
// which rows and columns of each table, and what that costs each rank in parameter and optimizer
// bytes. The planner is greedy and deterministic, so every rank computes the same plan from the same
// inputs without talking to the others. Also the collective that re-assembles a sharded tensor.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "parallel/communicator.h"

namespace rf {

// kReplicated: every rank holds the whole table (gradients are merged across ranks).
// kTable: one rank holds the whole table. kRow: rows split into contiguous near-equal blocks, one per
// rank. kColumn: the embedding dimension split into contiguous blocks; each rank holds all rows of
// its columns.
enum class ShardingKind { kReplicated, kTable, kRow, kColumn };
const char* sharding_kind_name(ShardingKind k);  // "replicated", "table", "row", "column"
// Throws ConfigError for anything but replicated|table|row|column.
ShardingKind parse_sharding_kind(const std::string& name, const std::string& key);

struct TableSpec {
  int64_t rows = 0, dim = 0;
  double lookups = 1.0;  // indices per sample (the pooling factor): the all-to-all traffic it causes
};

// One rank's block of a table: rows [row_begin, row_end) x columns [col_begin, col_end).
struct ShardPiece {
  int rank = 0;
  int64_t row_begin = 0, row_end = 0, col_begin = 0, col_end = 0;
  int64_t rows() const { return row_end - row_begin; }
  int64_t cols() const { return col_end - col_begin; }
};

struct TablePlacement {
  ShardingKind kind = ShardingKind::kReplicated;
  std::vector<ShardPiece> pieces;  // in rank order; empty for kReplicated (every rank holds all of it)
};

struct PlannerOptions {
  int world = 1;              // ranks of the group the tables are sharded over
  int64_t budget_bytes = 0;   // per rank, for table shards and their optimizer state; 0 = unlimited
  std::string mode = "auto";  // auto | replicated | table | row | column
  std::map<int, ShardingKind> overrides;  // per table index, over `mode`
  int64_t state_floats_per_row = 1;       // sparse optimizer state per held row: row-wise Adagrad 1, SGD 0
  // auto: a table whose bytes exceed this share of the budget is split row-wise instead of being
  // given whole to one rank (it would leave that rank no room to balance the others).
  double row_wise_share = 0.5;
};

struct ShardingPlan {
  int world = 1;
  std::vector<TableSpec> tables;
  std::vector<TablePlacement> placement;  // per table
  std::vector<int64_t> param_bytes;       // per rank: fp32 table values it holds
  std::vector<int64_t> state_bytes;       // per rank: fp32 optimizer state of those rows
  std::vector<double> lookups;            // per rank: indices per sample it serves
  int64_t budget_bytes = 0;
  int64_t state_floats_per_row = 1;       // as planned for: > 0 when the sparse optimizer keeps row state

  int64_t bytes(int rank) const { return param_bytes[rank] + state_bytes[rank]; }
  bool all_replicated() const;
  // The piece `rank` holds of table t, or nullptr (kReplicated: nullptr; the caller holds all of it).
  const ShardPiece* piece(int t, int rank) const;
  // A table per table and a line per rank with its MiB (parameters + optimizer state) and lookups.
  std::string describe() const;
};

// Plans every table; throws ConfigError when some rank's bytes exceed the budget, naming the rank,
// its bytes, the budget and the total. Deterministic: same inputs, same plan on every rank.
ShardingPlan plan_sharding(const std::vector<TableSpec>& tables, const PlannerOptions& opts);

// "3:row,7:column" -> {3: row, 7: column}; throws ConfigError naming `key` for bad entries or
// indices >= num_tables.
std::map<int, ShardingKind> parse_table_overrides(const std::string& text, int num_tables, const std::string& key);

// Collective over `comm`: every rank passes the block it holds (fp32 [rows, cols] or 1-D [rows], or
// an undefined tensor for none) and where it sits in the full [full_rows, full_cols] tensor (1-D:
// full_cols = 1); every rank gets the full tensor. Blocks must tile it exactly once, or the ranks
// hold copies of the same block (replicas are fine: the lowest rank's copy is kept).
Tensor gather_shards_2d(Communicator& comm, const Tensor& local, int64_t row_begin, int64_t col_begin,
                        int64_t full_rows, int64_t full_cols);

}  // namespace rf
