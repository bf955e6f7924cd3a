// Column spec parsing and presets for the tab-separated reader.
#include "dataloader/schema.h"

#include <charconv>

#include "src/core/error.h"

namespace rf::data {

const char* column_kind_name(ColumnKind kind) {
  switch (kind) {
    case ColumnKind::kLabel: return "label";
    case ColumnKind::kDense: return "dense";
    case ColumnKind::kCategorical: return "cat";
    case ColumnKind::kMultiHot: return "multi";
    case ColumnKind::kIgnore: return "ignore";
  }
  return "?";
}

namespace {

bool kind_from_word(const std::string& w, ColumnKind* kind) {
  if (w == "label") *kind = ColumnKind::kLabel;
  else if (w == "dense") *kind = ColumnKind::kDense;
  else if (w == "cat" || w == "categorical") *kind = ColumnKind::kCategorical;
  else if (w == "multi" || w == "multi_hot" || w == "multihot") *kind = ColumnKind::kMultiHot;
  else if (w == "ignore" || w == "skip") *kind = ColumnKind::kIgnore;
  else return false;
  return true;
}

}  // namespace

ColumnSchema ColumnSchema::parse(const std::vector<std::string>& spec) {
  ColumnSchema s;
  int counts[5] = {0, 0, 0, 0, 0};
  auto bad = [](const std::string& tok, const std::string& why) {
    throw ConfigError("column spec: bad token '" + tok + "': " + why +
                      " (expected kind, kind*N or kind:name; kind is label, dense, cat, multi or ignore)");
  };
  for (const std::string& tok : spec) {
    std::string word = tok, name;
    int64_t n = 1;
    if (size_t star = tok.find('*'); star != std::string::npos) {
      word = tok.substr(0, star);
      std::string num = tok.substr(star + 1);
      auto [p, ec] = std::from_chars(num.data(), num.data() + num.size(), n);
      if (num.empty() || ec != std::errc() || p != num.data() + num.size() || n < 1 || n > 1000000)
        bad(tok, "count '" + num + "' is not a positive integer");
    } else if (size_t colon = tok.find(':'); colon != std::string::npos) {
      word = tok.substr(0, colon);
      name = tok.substr(colon + 1);
      if (name.empty()) bad(tok, "empty name");
    }
    ColumnKind kind;
    if (!kind_from_word(word, &kind)) bad(tok, "unknown kind '" + word + "'");
    int& c = counts[static_cast<int>(kind)];
    if (kind == ColumnKind::kLabel && c + n > 1) bad(tok, "more than one label column");
    for (int64_t i = 0; i < n; ++i) {
      ++c;
      Column col{kind, name};
      if (col.name.empty())
        col.name = kind == ColumnKind::kLabel ? "label" : std::string(column_kind_name(kind)) + " " + std::to_string(c);
      s.columns.push_back(std::move(col));
    }
  }
  if (s.columns.empty()) throw ConfigError("column spec: no columns");
  return s;
}

ColumnSchema ColumnSchema::preset(const std::string& format) {
  if (format == "criteo") return parse({"label", "dense*13", "cat*26"});
  if (format == "ml-100k" || format == "ml100k")
    return parse({"label", "dense:age", "dense:release_year", "dense:user_prior_count", "dense:item_prior_count",
                  "dense:user_prior_mean_x100", "dense:item_prior_mean_x100", "cat:user_id", "cat:item_id",
                  "cat:gender", "cat:occupation", "cat:zip3", "cat:release_year", "multi:genres"});
  throw ConfigError("unknown data format '" + format + "' (known: criteo, ml-100k)");
}

int ColumnSchema::num_dense() const {
  int n = 0;
  for (const Column& c : columns) n += c.kind == ColumnKind::kDense;
  return n;
}

int ColumnSchema::num_sparse() const {
  int n = 0;
  for (const Column& c : columns) n += c.kind == ColumnKind::kCategorical || c.kind == ColumnKind::kMultiHot;
  return n;
}

bool ColumnSchema::has_label() const {
  for (const Column& c : columns)
    if (c.kind == ColumnKind::kLabel) return true;
  return false;
}

int64_t ColumnSchema::buckets(int f) const {
  return hash_buckets.size() == 1 ? hash_buckets[0] : hash_buckets.at(static_cast<size_t>(f));
}

std::vector<std::string> ColumnSchema::sparse_names() const {
  std::vector<std::string> out;
  for (const Column& c : columns)
    if (c.kind == ColumnKind::kCategorical || c.kind == ColumnKind::kMultiHot) out.push_back(c.name);
  return out;
}

std::vector<std::string> ColumnSchema::dense_names() const {
  std::vector<std::string> out;
  for (const Column& c : columns)
    if (c.kind == ColumnKind::kDense) out.push_back(c.name);
  return out;
}

std::vector<bool> ColumnSchema::sparse_is_multi_hot() const {
  std::vector<bool> out;
  for (const Column& c : columns)
    if (c.kind == ColumnKind::kCategorical || c.kind == ColumnKind::kMultiHot)
      out.push_back(c.kind == ColumnKind::kMultiHot);
  return out;
}

void ColumnSchema::validate() const {
  if (columns.empty()) throw ConfigError("column schema has no columns");
  int labels = 0;
  for (const Column& c : columns) labels += c.kind == ColumnKind::kLabel;
  if (labels > 1) throw ConfigError("column schema has " + std::to_string(labels) + " label columns");
  const int ns = num_sparse();
  if (hash_buckets.size() != 1 && hash_buckets.size() != static_cast<size_t>(ns))
    throw ConfigError("hash_buckets has " + std::to_string(hash_buckets.size()) + " values; expected 1 or " +
                      std::to_string(ns) + " (one per sparse feature)");
  for (size_t i = 0; i < hash_buckets.size(); ++i)
    if (hash_buckets[i] < 2)
      throw ConfigError("hash_buckets[" + std::to_string(i) + "] = " + std::to_string(hash_buckets[i]) +
                        ": a table needs at least 2 rows (row 0 is reserved for missing values)");
  if (encoding == TokenEncoding::kHex && (max_hex_digits < 1 || max_hex_digits > 16))
    throw ConfigError("max_hex_digits must be in 1..16, got " + std::to_string(max_hex_digits));
  if (multi_hot_separator == '\t' || multi_hot_separator == '\n' || multi_hot_separator == '\0')
    throw ConfigError("multi-hot separator cannot be a tab, newline or NUL");
}

}  // namespace rf::data
