// Preprocessing: the main thread cuts each input (plain or gzip, via zlib) into chunks of shard_rows
// lines; workers parse a chunk with the same TsvReader the trainer uses (handed the chunk through an
// in-memory file, so parsing, hashing and error messages are identical), encode records and write the
// shard. With a frequency threshold, workers also count values on the train split; a second parallel
// pass then rewrites every shard's indices through the vocabulary in place and re-checksums it.
#include "dataloader/shard_writer.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <condition_variable>
#include <cstring>
#include <deque>
#include <exception>
#include <filesystem>
#include <fstream>
#include <map>
#include <mutex>
#include <thread>
#include <unordered_map>

#include "dataloader/shard_format.h"
#include "dataloader/tsv_reader.h"
#include "src/core/error.h"

namespace rf::data {

namespace fs = std::filesystem;

namespace {

std::vector<uint32_t> max_bags(const Batch& batch) {
  std::vector<uint32_t> bags;
  for (const Tensor& off : batch.offsets) {
    const int64_t* o = off.data<int64_t>();
    int64_t m = 1;
    for (int64_t i = 0; i < batch.size(); ++i) m = std::max(m, o[i + 1] - o[i]);
    bags.push_back(static_cast<uint32_t>(m));
  }
  return bags;
}

// The records of `batch` under `layout` (rows must fit u32; checked).
std::vector<uint8_t> encode_records(const ShardLayout& layout, const Batch& batch) {
  const int64_t n = batch.size();
  const uint32_t stride = layout.record_bytes();
  const std::vector<uint32_t> fo = layout.feature_offsets();
  const int64_t nd = layout.num_dense;
  std::vector<uint8_t> out(static_cast<size_t>(n) * stride, 0);
  const float* lp = batch.labels.data<float>();
  const float* dp = nd ? batch.dense.data<float>() : nullptr;
  for (int64_t i = 0; i < n; ++i) {
    uint8_t* rec = out.data() + static_cast<size_t>(i) * stride;
    std::memcpy(rec, lp + i, 4);
    if (nd) std::memcpy(rec + 4, dp + i * nd, static_cast<size_t>(nd) * 4);
  }
  for (size_t f = 0; f < layout.features.size(); ++f) {
    const FeatureLayout& fl = layout.features[f];
    const int64_t* idx = batch.indices[f].data<int64_t>();
    const int64_t* off = batch.offsets[f].data<int64_t>();
    for (int64_t i = 0; i < n; ++i) {
      uint8_t* p = out.data() + static_cast<size_t>(i) * stride + fo[f];
      const int64_t b = off[i], e = off[i + 1];
      RF_CHECK(e - b >= 1 && static_cast<uint64_t>(e - b) <= fl.max_bag, "encode_records: bag of ", e - b,
               " in feature ", f + 1, " (capacity ", fl.max_bag, ")");
      for (int64_t j = b; j < e; ++j) {
        RF_CHECK(idx[j] >= 0 && static_cast<uint64_t>(idx[j]) < fl.table_rows, "encode_records: row ", idx[j],
                 " outside table ", f + 1, " of ", fl.table_rows);
      }
      if (fl.kind == FeatureKind::kCategorical) {
        uint32_t v = static_cast<uint32_t>(idx[b]);
        std::memcpy(p, &v, 4);
      } else {
        uint32_t c = static_cast<uint32_t>(e - b);
        std::memcpy(p, &c, 4);
        for (int64_t j = b; j < e; ++j) {
          uint32_t v = static_cast<uint32_t>(idx[j]);
          std::memcpy(p + 4 + 4 * (j - b), &v, 4);
        }
      }
    }
  }
  return out;
}

std::vector<uint64_t> block_checksums(const ShardLayout& layout, const uint8_t* records) {
  std::vector<uint64_t> sums;
  const uint64_t stride = layout.record_bytes();
  for (uint64_t r = 0; r < layout.num_rows; r += layout.block_rows) {
    uint64_t rows = std::min<uint64_t>(layout.block_rows, layout.num_rows - r);
    sums.push_back(checksum64(records + r * stride, rows * stride));
  }
  return sums;
}

void write_all(int fd, const void* data, size_t bytes, const std::string& path) {
  const char* p = static_cast<const char*>(data);
  while (bytes > 0) {
    ssize_t w = ::write(fd, p, std::min<size_t>(bytes, 1 << 30));
    if (w < 0) {
      if (errno == EINTR) continue;
      throw Error("cannot write " + path + ": " + std::strerror(errno));
    }
    p += w;
    bytes -= static_cast<size_t>(w);
  }
}

uint64_t write_shard_file(const std::string& path, const ShardLayout& layout, const std::vector<uint8_t>& records) {
  std::vector<uint8_t> header = encode_shard_header(layout, block_checksums(layout, records.data()));
  std::string tmp = path + ".tmp";
  int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0) throw Error("cannot create " + tmp + ": " + std::strerror(errno));
  try {
    write_all(fd, header.data(), header.size(), tmp);
    write_all(fd, records.data(), records.size(), tmp);
  } catch (...) {
    ::close(fd);
    ::unlink(tmp.c_str());
    throw;
  }
  if (::close(fd) != 0) throw Error("cannot write " + tmp + ": " + std::strerror(errno));
  if (::rename(tmp.c_str(), path.c_str()) != 0) throw Error("cannot rename " + tmp + " to " + path + ": " + std::strerror(errno));
  return header.size() + records.size();
}

ShardLayout layout_of(const ColumnSchema& schema, const Batch& batch, int64_t block_rows,
                      const std::vector<int64_t>& table_rows) {
  RF_CHECK(block_rows > 0 && block_rows <= (int64_t{1} << 31), "block_rows ", block_rows);
  ShardLayout l = layout_for(schema, max_bags(batch), static_cast<uint32_t>(block_rows));
  l.num_rows = static_cast<uint64_t>(batch.size());
  if (!table_rows.empty()) {
    RF_CHECK(table_rows.size() == l.features.size(), "write_shard: ", table_rows.size(), " table sizes for ",
             l.features.size(), " sparse features");
    for (size_t f = 0; f < l.features.size(); ++f) l.features[f].table_rows = static_cast<uint64_t>(table_rows[f]);
  }
  return l;
}

// A chunk of whole lines of one input file, parsed by one worker into one shard.
struct Chunk {
  size_t split = 0;
  std::string path;        // the input file, for messages
  int64_t first_line = 1;  // line number of the chunk's first line in that file
  int64_t shard = 0;       // index inside the split
  std::string text;
};

// Per-feature value counts of one worker (only when a threshold is set).
struct Counts {
  std::vector<std::vector<uint32_t>> dense;                 // features with small tables
  std::vector<std::unordered_map<uint32_t, uint64_t>> map;  // the others
};
constexpr int64_t kDenseCountLimit = int64_t{1} << 24;

// "/proc/self/fd/7:12: reason" -> "input.tsv:1035: reason".
std::string relocate(const std::string& msg, const std::string& fd_path, const std::string& path, int64_t first_line) {
  std::string out;
  size_t pos = 0;
  while (pos < msg.size()) {
    size_t at = msg.find(fd_path + ":", pos);
    if (at == std::string::npos) {
      out += msg.substr(pos);
      break;
    }
    out += msg.substr(pos, at - pos);
    size_t num = at + fd_path.size() + 1, end = num;
    while (end < msg.size() && std::isdigit(static_cast<unsigned char>(msg[end]))) ++end;
    int64_t line = end > num ? std::stoll(msg.substr(num, end - num)) : 0;
    out += path + ":" + std::to_string(first_line - 1 + line);
    pos = end;
  }
  return out;
}

struct ChunkResult {
  int64_t rows = 0, bad = 0;
  uint64_t bytes = 0;
  std::string first_bad;
};

ChunkResult process_chunk(const ColumnSchema& schema, const Chunk& c, const std::string& shard_path,
                          const PreprocessOptions& o, Counts* counts) {
  int fd = ::memfd_create("recforge-chunk", MFD_CLOEXEC);
  if (fd < 0) throw Error(std::string("memfd_create: ") + std::strerror(errno));
  const std::string fd_path = "/proc/self/fd/" + std::to_string(fd);
  ChunkResult res;
  Batch batch;
  try {
    write_all(fd, c.text.data(), c.text.size(), "in-memory chunk of " + c.path);
    ReaderOptions ro;
    ro.skip_bad_rows = o.skip_bad_rows;
    ro.block_bytes = std::max<size_t>(c.text.size() + 1, 4096);
    TsvReader reader(schema, {fd_path}, ro);
    if (!reader.next(batch, INT64_MAX)) batch = Batch{};
    res.bad = reader.bad_rows();
    res.first_bad = relocate(reader.bad_rows_summary(), fd_path, c.path, c.first_line);
  } catch (const DataError& e) {
    ::close(fd);
    throw DataError(relocate(e.what(), fd_path, c.path, c.first_line));
  } catch (...) {
    ::close(fd);
    throw;
  }
  ::close(fd);
  res.rows = batch.size();
  if (res.rows == 0) return res;
  ShardLayout layout = layout_of(schema, batch, o.block_rows, {});
  res.bytes = write_shard_file(shard_path, layout, encode_records(layout, batch));
  if (counts) {
    for (size_t f = 0; f < batch.indices.size(); ++f) {
      const int64_t* idx = batch.indices[f].data<int64_t>();
      const int64_t nnz = batch.indices[f].numel();
      if (!counts->dense[f].empty()) {
        for (int64_t j = 0; j < nnz; ++j) ++counts->dense[f][static_cast<size_t>(idx[j])];
      } else {
        for (int64_t j = 0; j < nnz; ++j) ++counts->map[f][static_cast<uint32_t>(idx[j])];
      }
    }
  }
  return res;
}

std::string shard_name(int64_t i) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "part-%05lld%s", static_cast<long long>(i), kShardExtension);
  return buf;
}

// Rewrites the sparse indices of a shard through `maps` (per feature: old row -> new row) in place.
void remap_shard(const std::string& path, const std::vector<std::vector<uint32_t>>& maps,
                 const std::vector<int64_t>& table_rows) {
  int fd = ::open(path.c_str(), O_RDWR | O_CLOEXEC);
  if (fd < 0) throw Error("cannot open " + path + ": " + std::strerror(errno));
  struct stat st {};
  ::fstat(fd, &st);
  size_t bytes = static_cast<size_t>(st.st_size);
  void* p = ::mmap(nullptr, bytes, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
  ::close(fd);
  if (p == MAP_FAILED) throw Error("cannot map " + path + ": " + std::strerror(errno));
  uint8_t* base = static_cast<uint8_t*>(p);
  try {
    ShardLayout layout;
    std::vector<uint64_t> sums;
    decode_shard_header(path, base, bytes, bytes, &layout, &sums);
    ShardHeader h;
    std::memcpy(&h, base, sizeof h);
    uint8_t* rec = base + h.header_bytes;
    const std::vector<uint32_t> fo = layout.feature_offsets();
    for (uint64_t r = 0; r < layout.num_rows; ++r) {
      uint8_t* row = rec + r * h.record_bytes;
      for (size_t f = 0; f < fo.size(); ++f) {
        uint8_t* q = row + fo[f];
        uint32_t count = 1;
        if (layout.features[f].kind == FeatureKind::kMultiHot) {
          std::memcpy(&count, q, 4);
          q += 4;
        }
        for (uint32_t j = 0; j < count; ++j) {
          uint32_t v;
          std::memcpy(&v, q + 4 * j, 4);
          v = v < maps[f].size() ? maps[f][v] : 1u;
          std::memcpy(q + 4 * j, &v, 4);
        }
      }
    }
    for (size_t f = 0; f < layout.features.size(); ++f) layout.features[f].table_rows = static_cast<uint64_t>(table_rows[f]);
    std::vector<uint8_t> header = encode_shard_header(layout, block_checksums(layout, rec));
    RF_CHECK(header.size() == h.header_bytes, "remap: header size changed");
    std::memcpy(base, header.data(), header.size());
  } catch (...) {
    ::munmap(p, bytes);
    throw;
  }
  ::munmap(p, bytes);
}

}  // namespace

uint64_t write_shard(const std::string& path, const ColumnSchema& schema, const Batch& batch, int64_t block_rows,
                     const std::vector<int64_t>& table_rows) {
  ShardLayout layout = layout_of(schema, batch, block_rows, table_rows);
  return write_shard_file(path, layout, encode_records(layout, batch));
}

PreprocessSummary preprocess(const ColumnSchema& schema_in, const std::vector<SplitInput>& splits,
                             const std::string& out_dir, const PreprocessOptions& o) {
  auto t0 = std::chrono::steady_clock::now();
  ColumnSchema schema = schema_in;
  schema.validate();
  if (o.shard_rows < 1) throw ConfigError("[data] shard_rows: expected >= 1, got " + std::to_string(o.shard_rows));
  if (o.block_rows < 1 || o.block_rows > (int64_t{1} << 31))
    throw ConfigError("[data] block_rows: expected 1..2^31, got " + std::to_string(o.block_rows));
  if (out_dir.empty()) throw ConfigError("preprocess: no output directory (--out DIR)");
  if (splits.empty()) throw ConfigError("preprocess: no input files ([data] train, validation, test)");
  for (const SplitInput& s : splits) {
    for (const std::string& p : s.paths) {
      if (!fs::exists(p)) throw DataError("[data] " + s.name + ": file '" + p + "' not found");
    }
  }
  layout_for(schema, {}, static_cast<uint32_t>(o.block_rows));  // refuses tables above 2^32 rows up front
  const int threads = o.threads > 0 ? o.threads : std::max(1u, std::thread::hardware_concurrency());
  const int ns = schema.num_sparse();

  PreprocessSummary summary;
  summary.threads = threads;
  size_t fit_split = 0;
  for (size_t i = 0; i < splits.size(); ++i) {
    if (splits[i].name == "train") fit_split = i;
  }
  for (const SplitInput& s : splits) {
    fs::path dir = fs::path(out_dir) / s.name;
    fs::create_directories(dir);
    for (const auto& e : fs::directory_iterator(dir)) {  // a previous run's shards would join this one's
      if (e.path().extension() == kShardExtension) fs::remove(e.path());
    }
    SplitSummary ss;
    ss.name = s.name;
    summary.splits.push_back(ss);
  }

  // Worker pool over a bounded chunk queue.
  std::mutex mu;
  std::condition_variable cv_put, cv_get;
  std::deque<Chunk> queue;
  bool done = false;
  std::exception_ptr error;
  std::vector<Counts> counts(static_cast<size_t>(threads));
  if (o.freq_threshold > 0) {
    for (Counts& c : counts) {
      c.dense.resize(static_cast<size_t>(ns));
      c.map.resize(static_cast<size_t>(ns));
      for (int f = 0; f < ns; ++f) {
        if (schema.buckets(f) <= kDenseCountLimit) c.dense[static_cast<size_t>(f)].assign(static_cast<size_t>(schema.buckets(f)), 0);
      }
    }
  }
  struct Done {
    size_t split;
    int64_t shard;
    ChunkResult r;
  };
  std::vector<Done> results;
  auto worker = [&](int id) {
    for (;;) {
      Chunk c;
      {
        std::unique_lock<std::mutex> lock(mu);
        cv_get.wait(lock, [&] { return !queue.empty() || done; });
        if (queue.empty()) return;
        c = std::move(queue.front());
        queue.pop_front();
      }
      cv_put.notify_one();
      try {
        std::string path = (fs::path(out_dir) / splits[c.split].name / shard_name(c.shard)).string();
        Counts* cnt = o.freq_threshold > 0 && c.split == fit_split ? &counts[static_cast<size_t>(id)] : nullptr;
        ChunkResult r = process_chunk(schema, c, path, o, cnt);
        std::lock_guard<std::mutex> lock(mu);
        results.push_back({c.split, c.shard, std::move(r)});
      } catch (...) {
        std::lock_guard<std::mutex> lock(mu);
        if (!error) error = std::current_exception();
        done = true;
        queue.clear();
        cv_put.notify_all();
        cv_get.notify_all();
        return;
      }
    }
  };
  std::vector<std::thread> pool;
  for (int i = 0; i < threads; ++i) pool.emplace_back(worker, i);

  auto put = [&](Chunk&& c) {
    std::unique_lock<std::mutex> lock(mu);
    cv_put.wait(lock, [&] { return queue.size() < static_cast<size_t>(threads) || done; });
    if (done) return false;
    queue.push_back(std::move(c));
    cv_get.notify_one();
    return true;
  };

  // The chunker: whole lines, shard_rows of them per chunk (the last chunk of a file may be shorter;
  // shards do not span files so that line numbers in messages stay per file).
  try {
    bool stopped = false;
    for (size_t si = 0; si < splits.size() && !stopped; ++si) {
      int64_t shard = 0;
      for (const std::string& path : splits[si].paths) {
        if (stopped) break;
        summary.splits[si].input_bytes += fs::file_size(path);
        gzFile gz = gzopen(path.c_str(), "rb");
        if (!gz) throw DataError("cannot open " + path + ": " + std::strerror(errno));
        gzbuffer(gz, 1 << 20);
        int64_t line = 1, lines_in_file = 0;
        const int64_t max_lines = o.max_rows > 0 ? o.max_rows : INT64_MAX;
        bool eof = false;
        std::vector<char> buf(4 << 20);
        Chunk c{si, path, line, shard, {}};
        int64_t chunk_lines = 0;
        while (!eof && lines_in_file < max_lines) {
          int got = gzread(gz, buf.data(), static_cast<unsigned>(buf.size()));
          if (got < 0) {
            int code = 0;
            const char* msg = gzerror(gz, &code);
            gzclose(gz);
            throw DataError("error reading " + path + ": " + (msg ? msg : "zlib error"));
          }
          if (got == 0) eof = true;
          const char* p = buf.data();
          const char* end = p + got;
          while (p < end && lines_in_file < max_lines) {
            const char* nl = static_cast<const char*>(std::memchr(p, '\n', static_cast<size_t>(end - p)));
            if (!nl) {
              c.text.append(p, end);
              break;
            }
            c.text.append(p, nl + 1);
            p = nl + 1;
            ++chunk_lines;
            ++lines_in_file;
            if (chunk_lines == o.shard_rows) {
              line += chunk_lines;
              if (!put(std::move(c))) { stopped = true; break; }
              c = Chunk{si, path, line, ++shard, {}};
              chunk_lines = 0;
            }
          }
          if (stopped) break;
        }
        gzclose(gz);
        // A last line without a newline, or a partial chunk.
        if (!stopped && !c.text.empty() && (lines_in_file < max_lines || chunk_lines > 0)) {
          if (!put(std::move(c))) stopped = true;
          else ++shard;
        }
      }
    }
  } catch (...) {
    std::lock_guard<std::mutex> lock(mu);
    if (!error) error = std::current_exception();
  }
  {
    std::lock_guard<std::mutex> lock(mu);
    done = true;
  }
  cv_get.notify_all();
  for (std::thread& t : pool) t.join();
  if (error) std::rethrow_exception(error);

  // Shard indices inside a split may have gaps where a chunk held only bad rows: renumber densely.
  std::sort(results.begin(), results.end(),
            [](const Done& a, const Done& b) { return a.split != b.split ? a.split < b.split : a.shard < b.shard; });
  std::vector<std::string> shard_paths;
  std::vector<int64_t> next_index(splits.size(), 0);
  for (const Done& d : results) {
    SplitSummary& s = summary.splits[d.split];
    s.bad_rows += d.r.bad;
    if (s.bad_rows_summary.empty() && !d.r.first_bad.empty()) s.bad_rows_summary = d.r.first_bad;
    if (d.r.rows == 0) continue;
    fs::path dir = fs::path(out_dir) / splits[d.split].name;
    int64_t idx = next_index[d.split]++;
    if (idx != d.shard) fs::rename(dir / shard_name(d.shard), dir / shard_name(idx));
    shard_paths.push_back((dir / shard_name(idx)).string());
    s.rows += d.r.rows;
    s.shards += 1;
    s.output_bytes += d.r.bytes;
  }

  for (int f = 0; f < ns; ++f) summary.table_rows.push_back(schema.buckets(f));
  if (o.freq_threshold > 0) {
    // Vocabulary per feature: values seen >= threshold times, numbered 2.. by falling count (ties by
    // hashed row); everything else -> 1; missing (row 0) stays 0.
    std::vector<std::vector<uint32_t>> maps(static_cast<size_t>(ns));
    std::ofstream vocab(fs::path(out_dir) / "vocab.tsv");
    vocab << "# recforge vocabulary: feature\tname\tindex\thashed_row\tcount (index 0 = missing, 1 = rare, "
             "threshold " << o.freq_threshold << ")\n";
    const std::vector<std::string> names = schema.sparse_names();
    for (int f = 0; f < ns; ++f) {
      std::map<uint32_t, uint64_t> total;
      for (const Counts& c : counts) {
        const auto& d = c.dense[static_cast<size_t>(f)];
        for (size_t v = 0; v < d.size(); ++v) {
          if (d[v]) total[static_cast<uint32_t>(v)] += d[v];
        }
        for (const auto& [v, n] : c.map[static_cast<size_t>(f)]) total[v] += n;
      }
      std::vector<std::pair<uint32_t, uint64_t>> kept;
      uint64_t rare = 0;
      for (const auto& [v, n] : total) {
        if (v == 0) continue;
        if (static_cast<int64_t>(n) >= o.freq_threshold) kept.push_back({v, n});
        else rare += n;
      }
      std::sort(kept.begin(), kept.end(), [](const auto& a, const auto& b) {
        return a.second != b.second ? a.second > b.second : a.first < b.first;
      });
      std::vector<uint32_t>& m = maps[static_cast<size_t>(f)];
      m.assign(static_cast<size_t>(schema.buckets(f)), 1u);
      m[0] = 0;
      vocab << f << '\t' << names[static_cast<size_t>(f)] << "\t1\t-\t" << rare << '\n';
      for (size_t i = 0; i < kept.size(); ++i) {
        m[kept[i].first] = static_cast<uint32_t>(i + 2);
        vocab << f << '\t' << names[static_cast<size_t>(f)] << '\t' << i + 2 << '\t' << kept[i].first << '\t'
              << kept[i].second << '\n';
      }
      summary.table_rows[static_cast<size_t>(f)] = static_cast<int64_t>(kept.size() + 2);
    }
    if (!vocab) throw Error("cannot write " + (fs::path(out_dir) / "vocab.tsv").string());
    std::atomic<size_t> next{0};
    std::exception_ptr remap_error;
    std::mutex emu;
    std::vector<std::thread> remap;
    for (int i = 0; i < threads; ++i) {
      remap.emplace_back([&] {
        for (size_t j; (j = next++) < shard_paths.size();) {
          try {
            remap_shard(shard_paths[j], maps, summary.table_rows);
          } catch (...) {
            std::lock_guard<std::mutex> lock(emu);
            if (!remap_error) remap_error = std::current_exception();
          }
        }
      });
    }
    for (std::thread& t : remap) t.join();
    if (remap_error) std::rethrow_exception(remap_error);
  }
  summary.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  return summary;
}

}  // namespace rf::data
