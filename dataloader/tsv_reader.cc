// Tab-separated reader: block reads through zlib (transparent for plain files), one memchr per line,
// fields parsed in place. Staging vectors hold a batch; a bad row is rolled back before it is counted.
#include "dataloader/tsv_reader.h"

#include <zlib.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <charconv>
#include <cmath>
#include <cstring>

#include "dataloader/hash.h"
#include "src/core/error.h"

namespace rf::data {

namespace {

// Small non-negative integers are by far the most common dense values: a table saves the log1p call.
constexpr int kLogTableSize = 4096;
const std::array<float, kLogTableSize>& log_table() {
  static const std::array<float, kLogTableSize> t = [] {
    std::array<float, kLogTableSize> a{};
    for (int i = 0; i < kLogTableSize; ++i) a[i] = static_cast<float>(std::log1p(static_cast<double>(i)));
    return a;
  }();
  return t;
}

const std::array<int8_t, 256>& hex_table() {
  static const std::array<int8_t, 256> t = [] {
    std::array<int8_t, 256> a;
    a.fill(-1);
    for (int c = '0'; c <= '9'; ++c) a[c] = static_cast<int8_t>(c - '0');
    for (int c = 'a'; c <= 'f'; ++c) a[c] = static_cast<int8_t>(c - 'a' + 10);
    for (int c = 'A'; c <= 'F'; ++c) a[c] = static_cast<int8_t>(c - 'A' + 10);
    return a;
  }();
  return t;
}

// Quotes a field for an error message, shortened so a corrupt megabyte line does not flood the log.
std::string quoted(const char* b, const char* e) {
  constexpr size_t kMax = 40;
  size_t n = static_cast<size_t>(e - b);
  std::string s(b, std::min(n, kMax));
  if (n > kMax) s += "...";
  return "'" + s + "'";
}

bool parse_dense(const char* b, const char* e, float* out) {
  if (b == e) {
    *out = 0.0f;
    return true;
  }
  const char* p = b;
  bool neg = *p == '-';
  if (neg) ++p;
  if (p < e && e - p <= 18) {
    uint64_t v = 0;
    const char* q = p;
    while (q < e && static_cast<unsigned>(*q - '0') < 10u) v = v * 10 + static_cast<uint64_t>(*q++ - '0');
    if (q == e) {
      if (neg) *out = 0.0f;
      else *out = v < kLogTableSize ? log_table()[v] : static_cast<float>(std::log1p(static_cast<double>(v)));
      return true;
    }
  }
  double d = 0;
  auto [ptr, ec] = std::from_chars(b, e, d);
  if (ec != std::errc() || ptr != e || !std::isfinite(d)) return false;
  *out = dense_transform(d);
  return true;
}

}  // namespace

float dense_transform(double x) {
  if (!(x > 0)) return 0.0f;  // negative (and -0) -> 0; NaN never reaches here (the parser rejects it)
  return static_cast<float>(std::log1p(x));
}

struct TsvReader::Impl {
  // Per column: what to do with it and where it goes (dense slot or sparse feature index).
  std::vector<ColumnKind> kinds;
  std::vector<int> slot;
  std::vector<int64_t> buckets;  // per sparse feature

  // Current file.
  gzFile file = nullptr;
  size_t next_file = 0;
  std::string path;
  int64_t line = 0;
  std::vector<char> buf;
  size_t pos = 0, end = 0;
  bool eof = true;

  // Staging for the batch being built.
  std::vector<float> labels, dense, row_dense;
  std::vector<std::vector<int64_t>> idx, off;

  void close() {
    if (file) gzclose(file);
    file = nullptr;
  }
  ~Impl() { close(); }
};

TsvReader::TsvReader(ColumnSchema schema, std::vector<std::string> paths, ReaderOptions options)
    : schema_(std::move(schema)), paths_(std::move(paths)), options_(options), impl_(std::make_unique<Impl>()) {
  schema_.validate();
  if (paths_.empty()) throw DataError("no data files given");
  for (const std::string& p : paths_) {
    gzFile f = gzopen(p.c_str(), "rb");
    if (!f) throw DataError("cannot open " + p + ": " + std::strerror(errno));
    gzclose(f);
  }
  int nd = 0, ns = 0;
  for (const Column& c : schema_.columns) {
    impl_->kinds.push_back(c.kind);
    if (c.kind == ColumnKind::kDense) impl_->slot.push_back(nd++);
    else if (c.kind == ColumnKind::kCategorical || c.kind == ColumnKind::kMultiHot) impl_->slot.push_back(ns++);
    else impl_->slot.push_back(-1);
  }
  for (int f = 0; f < ns; ++f) impl_->buckets.push_back(schema_.buckets(f));
  impl_->row_dense.resize(static_cast<size_t>(nd));
  impl_->idx.resize(static_cast<size_t>(ns));
  impl_->off.resize(static_cast<size_t>(ns));
  impl_->buf.resize(std::max<size_t>(options_.block_bytes, 4096));
}

TsvReader::~TsvReader() = default;

void TsvReader::reset() {
  impl_->close();
  impl_->next_file = 0;
  impl_->pos = impl_->end = 0;
  impl_->eof = true;
  rows_read_ = 0;
  bad_rows_ = 0;
  first_bad_.clear();
}

bool TsvReader::open_next_file() {
  Impl& m = *impl_;
  m.close();
  if (m.next_file >= paths_.size()) return false;
  m.path = paths_[m.next_file++];
  m.file = gzopen(m.path.c_str(), "rb");
  if (!m.file) throw DataError("cannot open " + m.path + ": " + std::strerror(errno));
  gzbuffer(m.file, 1 << 20);
  m.line = 0;
  m.pos = m.end = 0;
  m.eof = false;
  return true;
}

bool TsvReader::next_line(const char** begin, const char** end) {
  Impl& m = *impl_;
  for (;;) {
    if (m.pos < m.end) {
      char* b = m.buf.data() + m.pos;
      char* nl = static_cast<char*>(std::memchr(b, '\n', m.end - m.pos));
      if (nl || m.eof) {  // a whole line, or the last line of a file without a final newline
        char* e = nl ? nl : m.buf.data() + m.end;
        m.pos = nl ? static_cast<size_t>(nl - m.buf.data()) + 1 : m.end;
        if (e > b && e[-1] == '\r') --e;
        ++m.line;
        *begin = b;
        *end = e;
        return true;
      }
    }
    if (m.eof) {
      if (!open_next_file()) return false;
      continue;
    }
    // Keep the partial line, grow when it fills the buffer, read the next block after it.
    size_t keep = m.end - m.pos;
    if (keep) std::memmove(m.buf.data(), m.buf.data() + m.pos, keep);
    m.pos = 0;
    m.end = keep;
    if (keep == m.buf.size()) m.buf.resize(m.buf.size() * 2);
    size_t want = std::min<size_t>(m.buf.size() - keep, 1u << 30);
    int got = gzread(m.file, m.buf.data() + keep, static_cast<unsigned>(want));
    if (got < 0) {
      int code = 0;
      const char* msg = gzerror(m.file, &code);
      throw DataError("error reading " + m.path + ": " + (msg ? msg : "unknown zlib error"));
    }
    if (got == 0) m.eof = true;
    m.end += static_cast<size_t>(got);
  }
}

bool TsvReader::parse_row(const char* begin, const char* end, std::string* reason) {
  Impl& m = *impl_;
  const int ncol = static_cast<int>(m.kinds.size());
  const int fields = 1 + static_cast<int>(std::count(begin, end, '\t'));
  if (fields != ncol) {
    *reason = "expected " + std::to_string(ncol) + " tab-separated fields, got " + std::to_string(fields);
    return false;
  }
  const auto& hex = hex_table();
  const bool is_hex = schema_.encoding == TokenEncoding::kHex;
  const int max_digits = schema_.max_hex_digits;
  const char sep = schema_.multi_hot_separator;

  // Hashes one token to a row; false when it is not a valid token.
  auto token_row = [&](const char* b, const char* e, int64_t buckets, int64_t* row) {
    if (b == e) return false;
    if (!is_hex) {
      *row = string_token_row(std::string_view(b, static_cast<size_t>(e - b)), buckets);
      return true;
    }
    if (e - b > max_digits) return false;
    uint64_t v = 0;
    for (const char* q = b; q < e; ++q) {
      int8_t d = hex[static_cast<uint8_t>(*q)];
      if (d < 0) return false;
      v = (v << 4) | static_cast<uint64_t>(d);
    }
    *row = hex_value_row(v, buckets);
    return true;
  };
  auto token_expect = [&]() {
    return is_hex ? "expected a hex token of at most " + std::to_string(max_digits) + " digits"
                  : std::string("expected a non-empty token");
  };
  auto fail_rollback = [&](int upto) {
    for (int c = 0; c < upto; ++c) {
      ColumnKind k = m.kinds[c];
      if (k == ColumnKind::kCategorical || k == ColumnKind::kMultiHot) {
        auto& v = m.idx[m.slot[c]];
        v.resize(static_cast<size_t>(m.off[m.slot[c]].back()));
      }
    }
  };

  float label = 0.0f;
  const char* p = begin;
  for (int c = 0; c < ncol; ++c) {
    const char* q = static_cast<const char*>(std::memchr(p, '\t', static_cast<size_t>(end - p)));
    if (!q) q = end;
    const ColumnKind kind = m.kinds[c];
    auto field_error = [&](const std::string& what) {
      fail_rollback(c + 1);
      *reason = "field " + std::to_string(c + 1) + " (" + schema_.columns[c].name + "): " + what;
      return false;
    };
    switch (kind) {
      case ColumnKind::kLabel:
        if (q - p == 1 && (*p == '0' || *p == '1')) {
          label = *p == '1' ? 1.0f : 0.0f;
        } else {
          fail_rollback(c);
          *reason = schema_.columns[c].name + ": expected 0 or 1, got " + quoted(p, q);
          return false;
        }
        break;
      case ColumnKind::kDense:
        if (!parse_dense(p, q, &m.row_dense[m.slot[c]])) return field_error("expected a number, got " + quoted(p, q));
        break;
      case ColumnKind::kCategorical: {
        int f = m.slot[c];
        int64_t row = 0;
        if (p != q && !token_row(p, q, m.buckets[f], &row))
          return field_error(token_expect() + ", got " + quoted(p, q));
        m.idx[f].push_back(row);
        break;
      }
      case ColumnKind::kMultiHot: {
        int f = m.slot[c];
        if (p == q) {
          m.idx[f].push_back(0);
          break;
        }
        const char* t = p;
        for (int element = 1;; ++element) {
          const char* u = static_cast<const char*>(std::memchr(t, sep, static_cast<size_t>(q - t)));
          if (!u) u = q;
          int64_t row = 0;
          if (!token_row(t, u, m.buckets[f], &row))
            return field_error(token_expect() + ", got " + quoted(t, u) + " (element " + std::to_string(element) + ")");
          m.idx[f].push_back(row);
          if (u == q) break;
          t = u + 1;
        }
        break;
      }
      case ColumnKind::kIgnore:
        break;
    }
    p = q + 1;
  }
  m.labels.push_back(label);
  m.dense.insert(m.dense.end(), m.row_dense.begin(), m.row_dense.end());
  for (size_t f = 0; f < m.idx.size(); ++f) m.off[f].push_back(static_cast<int64_t>(m.idx[f].size()));
  return true;
}

void TsvReader::emit(Batch& batch, int64_t rows) {
  Impl& m = *impl_;
  const int64_t nd = static_cast<int64_t>(m.row_dense.size());
  Batch b;
  b.labels = Tensor::from_vector(m.labels, {rows});
  b.dense = Tensor::from_vector(m.dense, {rows, nd});
  for (size_t f = 0; f < m.idx.size(); ++f) {
    b.indices.push_back(Tensor::from_vector(m.idx[f], {static_cast<int64_t>(m.idx[f].size())}));
    b.offsets.push_back(Tensor::from_vector(m.off[f], {rows + 1}));
  }
  batch = std::move(b);
}

bool TsvReader::next(Batch& batch, int64_t batch_size) {
  RF_CHECK(batch_size > 0, "batch_size must be positive, got ", batch_size);
  Impl& m = *impl_;
  m.labels.clear();
  m.dense.clear();
  for (size_t f = 0; f < m.idx.size(); ++f) {
    m.idx[f].clear();
    m.off[f].assign(1, 0);
  }
  int64_t rows = 0;
  const char *b = nullptr, *e = nullptr;
  std::string reason;
  while (rows < batch_size && (options_.max_rows < 0 || rows_read_ < options_.max_rows) && next_line(&b, &e)) {
    if (parse_row(b, e, &reason)) {
      ++rows;
      ++rows_read_;
      continue;
    }
    std::string where = m.path + ":" + std::to_string(m.line) + ": " + reason;
    if (!options_.skip_bad_rows) throw DataError(where);
    if (bad_rows_++ == 0) first_bad_ = where;
  }
  if (rows == 0) return false;
  emit(batch, rows);
  return true;
}

std::string TsvReader::bad_rows_summary() const {
  if (bad_rows_ == 0) return "";
  return "skipped " + std::to_string(bad_rows_) + " bad row" + (bad_rows_ == 1 ? "" : "s") + ", first at " + first_bad_;
}

Batch load_all(const ColumnSchema& schema, const std::vector<std::string>& paths, ReaderOptions options,
               std::string* summary) {
  TsvReader reader(schema, paths, options);
  Batch all;
  if (!reader.next(all, INT64_MAX)) {
    // No rows: an empty batch with the right number of features.
    const int64_t nd = schema.num_dense();
    all.labels = Tensor::empty({0}, DType::kF32);
    all.dense = Tensor::empty({0, nd}, DType::kF32);
    for (int f = 0; f < schema.num_sparse(); ++f) {
      all.indices.push_back(Tensor::empty({0}, DType::kI64));
      all.offsets.push_back(Tensor::zeros({1}, DType::kI64));
    }
  }
  if (summary) *summary = reader.bad_rows_summary();
  return all;
}

std::vector<Batch> read_batches(const ColumnSchema& schema, const std::vector<std::string>& paths,
                                int64_t batch_size, ReaderOptions options, std::string* summary) {
  TsvReader reader(schema, paths, options);
  std::vector<Batch> out;
  Batch b;
  while (reader.next(b, batch_size)) out.push_back(std::move(b));
  if (summary) *summary = reader.bad_rows_summary();
  return out;
}

Batch batch_to(const Batch& b, Device device) {
  if (!b.labels.defined() || b.labels.device() == device) return b;
  return map_tensors(b, [&](const Tensor& t) { return t.to(device); });
}

Batch slice_batch(const Batch& batch, int64_t begin, int64_t end) {
  RF_CHECK(0 <= begin && begin <= end && end <= batch.size(), "slice_batch: rows [", begin, ", ", end,
           ") of a batch of ", batch.size());
  const int64_t rows = end - begin;
  Batch out;
  out.labels = batch.labels.slice_rows(begin, end).clone();
  out.dense = batch.dense.slice_rows(begin, end).clone();
  for (size_t f = 0; f < batch.indices.size(); ++f) {
    const int64_t* off = batch.offsets[f].data<int64_t>();
    const int64_t* idx = batch.indices[f].data<int64_t>();
    const int64_t base = off[begin], nnz = off[end] - base;
    Tensor o = Tensor::empty({rows + 1}, DType::kI64);
    Tensor i = Tensor::empty({nnz}, DType::kI64);
    for (int64_t r = 0; r <= rows; ++r) o.data<int64_t>()[r] = off[begin + r] - base;
    std::copy(idx + base, idx + base + nnz, i.data<int64_t>());
    out.indices.push_back(std::move(i));
    out.offsets.push_back(std::move(o));
  }
  return out;
}

}  // namespace rf::data
