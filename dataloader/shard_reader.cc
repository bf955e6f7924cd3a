// mmap-backed shard files, the dataset of a directory, and the per-rank ShardSource.
#include "dataloader/shard_reader.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <filesystem>

#include "src/core/error.h"

namespace rf::data {

namespace fs = std::filesystem;

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
  for (size_t f = 0; f < ns; ++f) {
    const int64_t cap = n * layout_.features[f].max_bag;
    ip[f] = buf.reserve(2 + 2 * f, cap, 0, DType::kI64).data<int64_t>();
    op[f] = buf.reserve(3 + 2 * f, n + 1, 0, DType::kI64).data<int64_t>();
    op[f][0] = 0;
  }
  std::vector<int64_t> nnz(ns, 0);
  for (int64_t i = 0; i < n; ++i) {
    const RowRef r = rows[i];
    const ShardFile& sf = *shards_[static_cast<size_t>(r.shard)];
    sf.verify_row(r.row);
    const uint8_t* rec = sf.record(r.row);
    std::memcpy(lp + i, rec, 4);
    std::memcpy(dp + i * nd, rec + 4, static_cast<size_t>(nd) * 4);
    const std::vector<uint32_t>& fo = feature_offsets_[static_cast<size_t>(r.shard)];
    const std::vector<FeatureLayout>& fl = sf.layout().features;
    for (size_t f = 0; f < ns; ++f) {
      const uint8_t* p = rec + fo[f];
      uint32_t v;
      std::memcpy(&v, p, 4);
      if (fl[f].kind == FeatureKind::kCategorical) {
        ip[f][nnz[f]++] = v;
      } else {
        if (v == 0 || v > fl[f].max_bag)
          throw DataError(sf.path() + ": byte " + std::to_string(sf.offset_of(p)) +
                          ": row " + std::to_string(r.row) + ", sparse feature " + std::to_string(f + 1) +
                          ": bag count " + std::to_string(v) + " outside 1.." + std::to_string(fl[f].max_bag));
        for (uint32_t j = 0; j < v; ++j) {
          uint32_t x;
          std::memcpy(&x, p + 4 + 4 * j, 4);
          ip[f][nnz[f]++] = x;
        }
      }
      op[f][i + 1] = nnz[f];
    }
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
  if (pos.rows != rows)
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
