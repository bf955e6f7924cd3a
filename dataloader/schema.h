// Column layout of a tab-separated data file: which column is the label, which are dense counts, which
// are categorical tokens (one per row) or multi-hot bags (several per row), and how tokens are hashed.
// Parsed from a compact spec such as {"label", "dense*13", "cat*26"}; presets for Criteo and ml-100k.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace rf::data {

enum class ColumnKind : uint8_t { kLabel, kDense, kCategorical, kMultiHot, kIgnore };
const char* column_kind_name(ColumnKind kind);  // "label", "dense", "cat", "multi", "ignore"

// How a categorical token is read.
enum class TokenEncoding : uint8_t {
  kHex,     // 1..max_hex_digits hex digits, hashed as splitmix64(value) (Criteo, ml-100k)
  kString,  // any non-empty bytes without tab/separator, hashed as fnv1a64(bytes)
};

struct Column {
  ColumnKind kind = ColumnKind::kIgnore;
  std::string name;  // for messages: "dense 2", "cat 1" (1-based within its kind) or the spec's name
};

inline constexpr int64_t kDefaultHashBuckets = 100000;

struct ColumnSchema {
  std::vector<Column> columns;  // file order
  // Rows per sparse feature's table, row 0 reserved for empty/missing. One value applies to every
  // sparse feature; otherwise one per sparse feature (categorical and multi-hot, in column order).
  std::vector<int64_t> hash_buckets{kDefaultHashBuckets};
  TokenEncoding encoding = TokenEncoding::kHex;
  int max_hex_digits = 8;
  char multi_hot_separator = ',';

  // Spec tokens: `kind`, `kind*N` (N columns named "kind 1".."kind N") or `kind:name` (one named
  // column). kind: label | dense | cat (categorical) | multi (multi_hot) | ignore (skip).
  // At most one label column. Throws ConfigError naming the bad token.
  static ColumnSchema parse(const std::vector<std::string>& spec);
  // "criteo": label, 13 dense integers, 26 categorical 8-digit hex tokens.
  // "ml-100k": label, 6 dense, 6 categorical, 1 multi-hot (see shared/data/ml-100k/make_ctr.py).
  static ColumnSchema preset(const std::string& format);
  static ColumnSchema criteo() { return preset("criteo"); }

  int num_columns() const { return static_cast<int>(columns.size()); }
  int num_dense() const;
  int num_sparse() const;  // categorical + multi-hot
  bool has_label() const;
  // Table size of sparse feature f (0-based among sparse features).
  int64_t buckets(int f) const;
  // Names of the sparse features / dense features, in column order.
  std::vector<std::string> sparse_names() const;
  std::vector<std::string> dense_names() const;
  std::vector<bool> sparse_is_multi_hot() const;
  // Throws ConfigError when hash_buckets has the wrong length or a value < 2, or the rest is invalid.
  void validate() const;
};

}  // namespace rf::data
