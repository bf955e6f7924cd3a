// mmap-backed shard files, the dataset of a directory, and the per-rank ShardSource.
#include "dataloader/shard_reader.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstring>
#include <filesystem>

#if defined(__x86_64__)
#include <immintrin.h>
#endif

#include "src/core/error.h"

namespace rf::data {

namespace fs = std::filesystem;

namespace {

#if defined(__x86_64__)
bool have_avx2() {
  static const bool yes = [] {
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx2") != 0;
  }();
  return yes;
}

// Rows [0, t) rounded down to 8 of four adjacent u32 columns at byte `off` of each record, widened
// into four i64 columns: per 8 rows, eight 16-byte loads, a 4x8 transpose in registers and eight
// 32-byte stores, where the scalar loop issues 32 loads and 32 stores. Returns the rows done.
__attribute__((target("avx2"))) int64_t transpose_4x8_avx2(const uint8_t* const* rec, uint32_t off, int64_t t,
                                                          int64_t* d0, int64_t* d1, int64_t* d2, int64_t* d3) {
  int64_t j = 0;
  for (; j + 8 <= t; j += 8) {
    auto row = [&](int k) { return _mm_loadu_si128(reinterpret_cast<const __m128i*>(rec[j + k] + off)); };
    const __m256i a0 = _mm256_inserti128_si256(_mm256_castsi128_si256(row(0)), row(4), 1);  // rows 0 | 4
    const __m256i a1 = _mm256_inserti128_si256(_mm256_castsi128_si256(row(1)), row(5), 1);
    const __m256i a2 = _mm256_inserti128_si256(_mm256_castsi128_si256(row(2)), row(6), 1);
    const __m256i a3 = _mm256_inserti128_si256(_mm256_castsi128_si256(row(3)), row(7), 1);
    const __m256i t0 = _mm256_unpacklo_epi32(a0, a1), t1 = _mm256_unpacklo_epi32(a2, a3);
    const __m256i t2 = _mm256_unpackhi_epi32(a0, a1), t3 = _mm256_unpackhi_epi32(a2, a3);
    const __m256i c[4] = {_mm256_unpacklo_epi64(t0, t1), _mm256_unpackhi_epi64(t0, t1),
                          _mm256_unpacklo_epi64(t2, t3), _mm256_unpackhi_epi64(t2, t3)};  // column k: rows 0-3 | 4-7
    int64_t* d[4] = {d0 + j, d1 + j, d2 + j, d3 + j};
    for (int k = 0; k < 4; ++k) {
      _mm256_storeu_si256(reinterpret_cast<__m256i*>(d[k]), _mm256_cvtepu32_epi64(_mm256_castsi256_si128(c[k])));
      _mm256_storeu_si256(reinterpret_cast<__m256i*>(d[k] + 4), _mm256_cvtepu32_epi64(_mm256_extracti128_si256(c[k], 1)));
    }
  }
  return j;
}
#endif

// memcpy for the few dozen bytes of a record's dense values: two fixed-size moves that overlap in the
// middle for 16..64 bytes (no call into the library's size dispatch per row).
inline void copy_small(void* dst, const void* src, size_t n) {
  auto* d = static_cast<uint8_t*>(dst);
  const auto* s = static_cast<const uint8_t*>(src);
  if (n >= 32 && n <= 64) {
    uint8_t a[32], b[32];
    std::memcpy(a, s, 32);
    std::memcpy(b, s + n - 32, 32);
    std::memcpy(d, a, 32);
    std::memcpy(d + n - 32, b, 32);
  } else if (n >= 16 && n < 32) {
    uint8_t a[16], b[16];
    std::memcpy(a, s, 16);
    std::memcpy(b, s + n - 16, 16);
    std::memcpy(d, a, 16);
    std::memcpy(d + n - 16, b, 16);
  } else {
    std::memcpy(d, s, n);
  }
}

// ShardDataset::decode's per-thread scratch: the records of the run being decoded, and per batch
// position its record in `staging`.
struct DecodeScratch {
  std::vector<uint8_t> staging;
  std::vector<const uint8_t*> recs;
};

}  // namespace

ShardFile::ShardFile(const std::string& path) : path_(path) {
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) throw DataError("cannot open " + path + ": " + std::strerror(errno));
  struct stat st {};
  if (::fstat(fd, &st) != 0) {
    int e = errno;
    ::close(fd);
    throw DataError("cannot stat " + path + ": " + std::strerror(e));
  }
  map_bytes_ = static_cast<size_t>(st.st_size);
  if (map_bytes_ > 0) {
    void* p = ::mmap(nullptr, map_bytes_, PROT_READ, MAP_SHARED, fd, 0);
    if (p == MAP_FAILED) {
      int e = errno;
      ::close(fd);
      throw DataError("cannot map " + path + ": " + std::strerror(e));
    }
    map_ = static_cast<const uint8_t*>(p);
  }
  ::close(fd);
  try {
    decode_shard_header(path, map_, map_bytes_, map_bytes_, &layout_, &block_checksums_);
  } catch (...) {
    if (map_) ::munmap(const_cast<uint8_t*>(map_), map_bytes_);
    throw;
  }
  if (map_bytes_ > 0) ::madvise(const_cast<uint8_t*>(map_), map_bytes_, MADV_WILLNEED);
  ShardHeader h;
  std::memcpy(&h, map_, sizeof h);
  records_ = map_ + h.header_bytes;
  stride_ = h.record_bytes;
  verified_ = std::make_unique<std::atomic<bool>[]>(block_checksums_.size());
  for (size_t i = 0; i < block_checksums_.size(); ++i) verified_[i].store(false, std::memory_order_relaxed);
}

ShardFile::~ShardFile() {
  if (map_) ::munmap(const_cast<uint8_t*>(map_), map_bytes_);
}

void ShardFile::verify_block(int64_t b) const {
  const int64_t first = b * layout_.block_rows;
  const int64_t rows = std::min<int64_t>(layout_.block_rows, num_rows() - first);
  const uint8_t* p = record(first);
  if (checksum64(p, static_cast<size_t>(rows) * stride_) != block_checksums_[static_cast<size_t>(b)]) {
    throw DataError(path_ + ": byte " + std::to_string(p - map_) + ": block " + std::to_string(b) + " (rows " +
                    std::to_string(first) + ".." + std::to_string(first + rows - 1) + "): checksum mismatch");
  }
  // Contents a checksum cannot vouch for (a shard written by another tool, or crafted): labels 0/1,
  // finite dense values, bag counts within capacity and rows inside their tables. Once per block, so
  // decoding needs no checks per value.
  const std::vector<uint32_t> fo = layout_.feature_offsets();
  for (int64_t r = first; r < first + rows; ++r) {
    const uint8_t* rec = record(r);
    auto fail = [&](const uint8_t* at, const std::string& what) {
      throw DataError(path_ + ": byte " + std::to_string(at - map_) + ": row " + std::to_string(r) + ": " + what);
    };
    float label;
    std::memcpy(&label, rec, 4);
    if (!(label == 0.0f || label == 1.0f)) fail(rec, "label " + std::to_string(label) + " is not 0 or 1");
    for (uint32_t d = 0; d < layout_.num_dense; ++d) {
      float x;
      std::memcpy(&x, rec + 4 + 4 * d, 4);
      if (!std::isfinite(x)) fail(rec + 4 + 4 * d, "dense " + std::to_string(d + 1) + " is not finite");
    }
    for (size_t f = 0; f < fo.size(); ++f) {
      const FeatureLayout& fl = layout_.features[f];
      const uint8_t* p = rec + fo[f];
      uint32_t count = 1;
      if (fl.kind == FeatureKind::kMultiHot) {
        std::memcpy(&count, p, 4);
        if (count == 0 || count > fl.max_bag)
          fail(p, "sparse feature " + std::to_string(f + 1) + ": bag count " + std::to_string(count) + " outside 1.." +
                      std::to_string(fl.max_bag));
        p += 4;
      }
      for (uint32_t e = 0; e < count; ++e) {
        uint32_t v;
        std::memcpy(&v, p + 4 * e, 4);
        if (v >= fl.table_rows)
          fail(p + 4 * e, "sparse feature " + std::to_string(f + 1) + ": row " + std::to_string(v) +
                              " outside its table of " + std::to_string(fl.table_rows) + " rows");
      }
    }
  }
  verified_[static_cast<size_t>(b)].store(true, std::memory_order_release);
}

void ShardFile::verify_all() const {
  for (size_t b = 0; b < block_checksums_.size(); ++b) {
    if (!verified_[b].load(std::memory_order_acquire)) verify_block(static_cast<int64_t>(b));
  }
}

ShardDataset::ShardDataset(const std::string& path, const ColumnSchema* schema) : path_(path) {
  std::vector<std::string> files;
  std::error_code ec;
  if (fs::is_directory(path, ec)) {
    for (const auto& e : fs::directory_iterator(path, ec)) {
      if (e.is_regular_file() && e.path().extension() == kShardExtension) files.push_back(e.path().string());
    }
    std::sort(files.begin(), files.end());
    if (files.empty()) throw DataError(path + ": no " + std::string(kShardExtension) + " files in the directory");
  } else if (fs::exists(path, ec)) {
    files.push_back(path);
  } else {
    throw DataError("shard path '" + path + "' not found");
  }
  for (const std::string& f : files) {
    auto s = std::make_unique<ShardFile>(f);
    if (schema) check_layout_matches(f, s->layout(), *schema);
    if (shards_.empty()) {
      layout_ = s->layout();
    } else {
      const ShardLayout& l = s->layout();
      bool same = l.num_dense == layout_.num_dense && l.features.size() == layout_.features.size() &&
                  l.has_label == layout_.has_label && l.block_rows == layout_.block_rows;
      for (size_t i = 0; same && i < l.features.size(); ++i) same = l.features[i].kind == layout_.features[i].kind;
      if (!same)
        throw DataError(f + ": record layout differs from " + shards_[0]->path() + " (shards of one split must agree)");
      for (size_t i = 0; i < l.features.size(); ++i) {
        layout_.features[i].max_bag = std::max(layout_.features[i].max_bag, l.features[i].max_bag);
        layout_.features[i].table_rows = std::max(layout_.features[i].table_rows, l.features[i].table_rows);
      }
    }
    shard_rows_.push_back(s->num_rows());
    feature_offsets_.push_back(s->layout().feature_offsets());
    num_rows_ += s->num_rows();
    shards_.push_back(std::move(s));
  }
  block_rows_ = layout_.block_rows;
  for (const auto& sh : shards_) max_record_bytes_ = std::max<uint64_t>(max_record_bytes_, sh->record_bytes());
  // quad_[f]: features f..f+3 are categorical and consecutive in the record (decode copies them
  // together). With no multi-hot bag between them they are consecutive in every shard's records.
  quad_.assign(layout_.features.size(), false);
  const std::vector<uint32_t>& fo0 = feature_offsets_[0];
  for (size_t f = 0; f + 4 <= layout_.features.size(); ++f) {
    bool q = true;
    for (size_t k = f; k < f + 4; ++k)
      q = q && layout_.features[k].kind == FeatureKind::kCategorical && fo0[k] == fo0[f] + 4 * (k - f);
    quad_[f] = q;
  }
}

std::vector<int64_t> ShardDataset::table_sizes() const {
  std::vector<int64_t> t;
  for (const FeatureLayout& f : layout_.features) t.push_back(static_cast<int64_t>(f.table_rows));
  return t;
}

void ShardDataset::decode(const RowRef* rows, int64_t n, BatchBuffer& buf, Batch& out) const {
  const int64_t nd = layout_.num_dense;
  const size_t ns = layout_.features.size();
  Tensor labels = buf.reserve(0, n, 0, DType::kF32);
  Tensor dense = buf.reserve(1, n * std::max<int64_t>(nd, 1), std::max<int64_t>(nd, 1), DType::kF32);
  float* lp = labels.data<float>();
  float* dp = dense.data<float>();
  std::vector<int64_t*> ip(ns), op(ns);
  std::vector<int64_t> nnz(ns, 0);
  for (size_t f = 0; f < ns; ++f) {
    const bool multi = layout_.features[f].kind == FeatureKind::kMultiHot;
    ip[f] = buf.reserve(2 + 2 * f, n * layout_.features[f].max_bag, 0, DType::kI64).data<int64_t>();
    Tensor off = buf.reserve(3 + 2 * f, n + 1, 0, DType::kI64);
    op[f] = off.data<int64_t>();
    // A categorical feature's offsets are 0, 1, 2, ...: written once per buffer, not per batch.
    if (!multi && buf.iota(3 + 2 * f) < n + 1) {
      for (int64_t i = 0; i < off.numel(); ++i) op[f][i] = i;
      buf.set_iota(3 + 2 * f, off.numel());
    } else if (multi) {
      buf.set_iota(3 + 2 * f, 0);
      op[f][0] = 0;
    }
    if (!multi) nnz[f] = n;
  }
  // By runs: consecutive batch positions whose rows come from one block of one shard (a shuffled
  // batch is whole blocks in permuted order, or part of one when the batch is smaller than a block).
  // (1) Stage the run: when its rows cover at least half of their range, copy that range out of the
  // mapping in one piece, a forward scan the hardware prefetcher follows (copying record by record in
  // batch order is a cache and TLB miss per record); a sparser run record by record. (2) Transpose the
  // run's positions from the staging buffer, still in L2, into the column tensors a tile of rows at a
  // time, so the tile's records stay in L1 while each column is written sequentially. Staging one run
  // at a time keeps the scratch to one block, which stays in the core's cache next to the batch's
  // columns (docs/loader.md has the measurements). The scratch belongs to the decoding thread, not to
  // the batch buffer: buffers rotate through the prefetch slots.
  thread_local DecodeScratch scratch;
  scratch.recs.resize(static_cast<size_t>(n));
  // A run lies inside one block and stages at most twice its records' bytes (see `contiguous`).
  const size_t stage_bytes = static_cast<size_t>(std::min<int64_t>(block_rows_, 2 * n)) * max_record_bytes_;
  if (scratch.staging.size() < stage_bytes) scratch.staging.resize(stage_bytes);
  // Rows [from, to) of the batch, all from one shard whose feature offsets are `fo`.
  constexpr int64_t kTile = 64;
  auto transpose = [&](int64_t from, int64_t to, const uint32_t* fo) {
    for (int64_t i0 = from; i0 < to; i0 += kTile) {
      const int64_t t = std::min(kTile, to - i0);
      const uint8_t* const* rec = scratch.recs.data() + i0;
      for (int64_t j = 0; j < t; ++j) {
        std::memcpy(lp + i0 + j, rec[j], 4);
        copy_small(dp + (i0 + j) * nd, rec[j] + 4, static_cast<size_t>(nd) * 4);
      }
      for (size_t f = 0; f < ns; ++f) {
        int64_t* dst = ip[f] + i0;
        const uint32_t off = fo[f];
        if (quad_[f]) {
          // Four categorical features stored next to each other: one 16-byte load per record feeds
          // four columns (a quarter of the loads of one feature at a time).
          int64_t* d1 = ip[f + 1] + i0;
          int64_t* d2 = ip[f + 2] + i0;
          int64_t* d3 = ip[f + 3] + i0;
          int64_t j = 0;
#if defined(__x86_64__)
          if (have_avx2()) j = transpose_4x8_avx2(rec, off, t, dst, d1, d2, d3);
#endif
          for (; j < t; ++j) {
            uint32_t v[4];
            std::memcpy(v, rec[j] + off, 16);
            dst[j] = v[0];
            d1[j] = v[1];
            d2[j] = v[2];
            d3[j] = v[3];
          }
          f += 3;
        } else if (layout_.features[f].kind == FeatureKind::kCategorical) {
          for (int64_t j = 0; j < t; ++j) {
            uint32_t v;
            std::memcpy(&v, rec[j] + off, 4);
            dst[j] = v;
          }
        } else {
          int64_t k = nnz[f];
          for (int64_t j = 0; j < t; ++j) {
            const uint8_t* p = rec[j] + off;
            uint32_t count;
            std::memcpy(&count, p, 4);  // in 1..max_bag: checked with the block
            for (uint32_t e = 0; e < count; ++e) {
              uint32_t v;
              std::memcpy(&v, p + 4 + 4 * e, 4);
              ip[f][k++] = v;
            }
            op[f][i0 + j + 1] = k;
          }
          nnz[f] = k;
        }
      }
    }
  };
  for (int64_t a = 0; a < n;) {
    const RowRef first = rows[a];
    const ShardFile& sf = *shards_[static_cast<size_t>(first.shard)];
    const int64_t block_lo = first.row - first.row % block_rows_, block_hi = block_lo + block_rows_;
    int64_t b = a + 1, lo = first.row, hi = first.row;
    for (; b < n && rows[b].shard == first.shard && rows[b].row >= block_lo && rows[b].row < block_hi; ++b) {
      lo = std::min(lo, rows[b].row);
      hi = std::max(hi, rows[b].row);
    }
    sf.verify_row(first.row);
    const uint64_t stride = sf.record_bytes();
    const bool contiguous = 2 * (b - a) >= hi - lo + 1;
    uint8_t* dst = scratch.staging.data();
    if (contiguous) {
      std::memcpy(dst, sf.record(lo), static_cast<size_t>(hi - lo + 1) * stride);
      for (int64_t i = a; i < b; ++i) scratch.recs[static_cast<size_t>(i)] = dst + static_cast<uint64_t>(rows[i].row - lo) * stride;
    } else {
      for (int64_t i = a; i < b; ++i, dst += stride) {
        std::memcpy(dst, sf.record(rows[i].row), stride);
        scratch.recs[static_cast<size_t>(i)] = dst;
      }
    }
    transpose(a, b, feature_offsets_[static_cast<size_t>(first.shard)].data());
    a = b;
  }
  Batch b;
  b.labels = labels.slice_rows(0, n);
  b.dense = nd > 0 ? dense.slice_rows(0, n) : Tensor::empty({n, 0}, DType::kF32);
  for (size_t f = 0; f < ns; ++f) {
    b.indices.push_back(buf.reserve(2 + 2 * f, 0, 0, DType::kI64).slice_rows(0, nnz[f]));
    b.offsets.push_back(buf.reserve(3 + 2 * f, 0, 0, DType::kI64).slice_rows(0, n + 1));
  }
  out = std::move(b);
}

ShardSource::ShardSource(std::shared_ptr<const ShardDataset> data, int64_t global_batch, int rank, int world,
                         const LoaderOptions& options)
    : data_(std::move(data)), global_batch_(global_batch), rank_(rank), world_(world), options_(options) {
  if (global_batch_ < 1) throw ConfigError("[train] batch_size: expected >= 1, got " + std::to_string(global_batch_));
  if (world_ < 1 || rank_ < 0 || rank_ >= world_)
    throw ConfigError("data loader: rank " + std::to_string(rank_) + " outside a world of " + std::to_string(world_));
  batches_ = data::batches_per_epoch(data_->num_rows(), global_batch_, options_.drop_last);
  prefetch_ = std::make_unique<Prefetcher>(
      [this](int64_t epoch, int64_t k, BatchBuffer& buf, Batch& out) { return produce(epoch, k, buf, out); },
      std::max(0, options_.threads), options_.prefetch_depth, options_.pin_memory);
  start_epoch(0);
}

ShardSource::~ShardSource() { prefetch_.reset(); }

bool ShardSource::produce(int64_t epoch, int64_t k, BatchBuffer& buf, Batch& out) const {
  Span s = rank_span(data_->num_rows(), global_batch_, k, rank_, world_);
  buf.rows.clear();
  order_->rows(s.begin, s.end, buf.cursor, &buf.rows);
  data_->decode(buf.rows.data(), s.size(), buf, out);
  return true;
}

bool ShardSource::next(Batch& batch) {
  if (!prefetch_->next(batch)) return false;
  rows_delivered_ += batch.size();
  return true;
}

void ShardSource::start_epoch(int64_t epoch) { seek({epoch, 0, 0}); }

LoaderPosition ShardSource::position() const { return {prefetch_->epoch(), prefetch_->next_batch(), rows_delivered_}; }

void ShardSource::seek(const LoaderPosition& pos) {
  if (pos.epoch < 0 || pos.batch < 0 || pos.batch > batches_)
    throw DataError("cannot resume " + data_->path() + " at " + pos.str() + ": an epoch has " +
                    std::to_string(batches_) + " batches of " + std::to_string(global_batch_) + " rows");
  int64_t rows = rank_rows_before(data_->num_rows(), global_batch_, pos.batch, rank_, world_);
  if (pos.rows >= 0 && pos.rows != rows)
    throw DataError("cannot resume " + data_->path() + " at " + pos.str() + ": rank " + std::to_string(rank_) +
                    " of " + std::to_string(world_) + " has read " + std::to_string(rows) +
                    " rows by that batch (saved with another batch size or world size?)");
  prefetch_->pause();
  order_ = std::make_shared<const EpochOrder>(data_->shard_rows(), data_->block_rows(), options_.shuffle,
                                              options_.seed, pos.epoch);
  rows_delivered_ = rows;
  prefetch_->start(pos.epoch, pos.batch, batches_);
}

std::string ShardSource::describe() const {
  std::string s = "shards " + data_->path() + " (" + std::to_string(data_->num_shards()) + " file" +
                  (data_->num_shards() == 1 ? "" : "s") + ", " + std::to_string(data_->num_rows()) + " rows), rank " +
                  std::to_string(rank_) + " of " + std::to_string(world_) + ", " +
                  std::to_string(prefetch_->threads()) + " workers, depth " + std::to_string(options_.prefetch_depth);
  s += options_.shuffle ? ", shuffle seed " + std::to_string(options_.seed) : ", no shuffle";
  return s;
}

}  // namespace rf::data
