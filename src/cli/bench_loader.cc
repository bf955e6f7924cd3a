// `recforge bench loader`: how fast data reaches the trainer. On generated Criteo-format data
// (bench.loader_rows rows) it times TSV parsing, preprocessing to shards (1 thread and all), and
// shuffled shard reading through the prefetching ShardSource (1 and 2 workers), next to two ceilings
// measured in the same run: a raw read() of the same shard bytes (also as block-sized preads in a
// shuffled block order, the loader's access pattern), and the rows/s the DLRM trainer of
// the config consumes (Trainer::train_step on batches from the loader). Each figure is the median of 3
// runs after validation (of 7 for the raw read and the shard epochs, which take milliseconds).
// Targets: shard loading >= 5x the trainer, within 2x of the raw read.
#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <functional>
#include <random>
#include <thread>

#include "dataloader/batch_source.h"
#include "dataloader/shard_reader.h"
#include "dataloader/shard_writer.h"
#include "dataloader/synth.h"
#include "dataloader/tsv_reader.h"
#include "kernels/threads.h"
#include "src/cli/commands.h"
#include "src/config/config.h"
#include "src/core/error.h"
#include "src/train/data_source.h"
#include "src/train/trainer.h"

namespace rf::cli {

namespace {

namespace fs = std::filesystem;

double seconds_of(const std::function<void()>& fn) {
  auto t0 = std::chrono::steady_clock::now();
  fn();
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

double median_of(int n, const std::function<double()>& run) {
  std::vector<double> a;
  for (int i = 0; i < n; ++i) a.push_back(run());
  std::sort(a.begin(), a.end());
  return a[a.size() / 2];
}

struct TempDir {
  fs::path path;
  TempDir() : path(fs::temp_directory_path() / ("recforge_bench_loader_" + std::to_string(::getpid()))) {
    fs::remove_all(path);
    fs::create_directories(path);
  }
  ~TempDir() {
    std::error_code ec;
    fs::remove_all(path, ec);
  }
};

}  // namespace

int run_bench_loader(const Config& cfg) {
  const int64_t rows = cfg.get_int("bench.loader_rows");
  const int64_t batch = cfg.get_int("train.batch_size");
  const int cores = static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
  TempDir tmp;
  const std::string tsv = (tmp.path / "train.tsv").string();
  data::SynthSpec spec;
  spec.rows_train = rows;
  spec.rows_test = 1;
  spec.seed = 1;
  data::synth_write(spec, tsv, (tmp.path / "test.tsv").string());
  data::ColumnSchema schema = data::ColumnSchema::criteo();
  schema.hash_buckets = {cfg.get_int("data.hash_buckets")};

  // TSV parsing (one thread: a text stream is sequential).
  double tsv_s = median_of(3, [&] {
    return seconds_of([&] {
      data::TsvReader reader(schema, {tsv});
      data::Batch b;
      int64_t n = 0;
      while (reader.next(b, batch)) n += b.size();
      RF_CHECK(n == rows, "tsv read ", n, " rows of ", rows);
    });
  });

  // Preprocessing, 1 thread and all cores.
  const std::string shards = (tmp.path / "shards").string();
  auto prep = [&](int threads) {
    data::PreprocessOptions o;
    o.threads = threads;
    o.shard_rows = std::max<int64_t>(4096, rows / (4 * cores));  // several shards per worker
    o.block_rows = cfg.get_int("data.block_rows");
    return median_of(3, [&] {
      data::PreprocessSummary s = data::preprocess(schema, {{"train", {tsv}}}, shards, o);
      RF_CHECK(s.splits[0].rows == rows, "preprocess wrote ", s.splits[0].rows, " rows of ", rows);
      return s.seconds;
    });
  };
  double prep1_s = prep(1);
  double prepn_s = prep(cores);
  const std::string train_dir = shards + "/train";

  // Validate once: the shards hold what the TSV reader parses.
  {
    data::Batch want = data::load_all(schema, {tsv}, {});
    data::LoaderOptions o;
    o.threads = 0;
    auto src = data::open_train_source(schema, train_dir, rows, 0, 1, o);
    data::Batch got;
    RF_CHECK(src->next(got) && got.size() == rows, "shard source returned a short batch");
    RF_CHECK(got.dense.to_vector<float>() == want.dense.to_vector<float>() &&
                 got.indices[25].to_vector<int64_t>() == want.indices[25].to_vector<int64_t>(),
             "shards differ from the parsed TSV");
  }

  // Raw read() of the same shard files: the ceiling for reading them.
  uint64_t shard_bytes = 0;
  std::vector<std::string> files;
  for (const auto& e : fs::directory_iterator(train_dir)) {
    files.push_back(e.path().string());
    shard_bytes += fs::file_size(e.path());
  }
  std::vector<char> buf(8 << 20);
  // Reads and shard epochs take milliseconds: median of 7 so that one descheduled run on a small
  // machine does not set the figure.
  double raw_s = median_of(7, [&] {
    return seconds_of([&] {
      uint64_t got = 0;
      for (const std::string& f : files) {
        int fd = ::open(f.c_str(), O_RDONLY);
        RF_CHECK(fd >= 0, "cannot open ", f);
        for (ssize_t n; (n = ::read(fd, buf.data(), buf.size())) > 0;) got += static_cast<uint64_t>(n);
        ::close(fd);
      }
      RF_CHECK(got == shard_bytes, "raw read ", got, " of ", shard_bytes, " bytes");
    });
  });

  // The same records read raw in a shuffled block order (one pread per block of every shard, blocks in
  // a random order): what reading them costs once the order is the loader's, before any decoding.
  // Reported next to the sequential read; the target is against the sequential one.
  double raw_blocks_s = 0;
  {
    data::ShardDataset ds(train_dir, &schema);
    struct Block {
      int fd;
      off_t offset;
      size_t bytes;
    };
    std::vector<int> fds;
    std::vector<Block> blocks;
    for (int i = 0; i < ds.num_shards(); ++i) {
      const data::ShardFile& sf = ds.shard(i);
      int fd = ::open(sf.path().c_str(), O_RDONLY);
      RF_CHECK(fd >= 0, "cannot open ", sf.path());
      fds.push_back(fd);
      const int64_t br = ds.block_rows();
      for (int64_t r = 0; r < sf.num_rows(); r += br)
        blocks.push_back({fd, static_cast<off_t>(sf.layout().header_bytes() + static_cast<uint64_t>(r) * sf.record_bytes()),
                          static_cast<size_t>(std::min(br, sf.num_rows() - r)) * sf.record_bytes()});
    }
    uint64_t record_bytes = 0;
    for (const Block& b : blocks) record_bytes += b.bytes;
    std::mt19937_64 shuffle_rng(1);
    raw_blocks_s = median_of(7, [&] {
      std::shuffle(blocks.begin(), blocks.end(), shuffle_rng);
      return seconds_of([&] {
        uint64_t got = 0;
        for (const Block& b : blocks) {
          ssize_t n = ::pread(b.fd, buf.data(), b.bytes, b.offset);
          RF_CHECK(n == static_cast<ssize_t>(b.bytes), "pread of ", b.bytes, " bytes returned ", n);
          got += static_cast<uint64_t>(n);
        }
        RF_CHECK(got == record_bytes, "block read ", got, " of ", record_bytes, " record bytes");
      });
    });
    for (int fd : fds) ::close(fd);
  }

  // Shard reading as the trainer sees it: shuffled, this rank's batches, through the prefetch queue.
  auto binary = [&](int threads) {
    data::LoaderOptions o;
    o.threads = threads;
    o.shuffle = true;
    o.seed = 1;
    o.prefetch_depth = static_cast<int>(cfg.get_int("data.prefetch_depth"));
    auto src = data::open_train_source(schema, train_dir, batch, 0, 1, o);
    int64_t epoch = 0;
    return median_of(7, [&] {
      return seconds_of([&] {
        src->start_epoch(epoch++);
        data::Batch b;
        int64_t n = 0;
        while (src->next(b)) n += b.size();
        RF_CHECK(n == rows, "shard source read ", n, " rows of ", rows);
      });
    });
  };
  double bin0_s = binary(0);
  double bin1_s = binary(1);
  double bin2_s = binary(2);

  // What the trainer consumes: train_step on loader batches with the config's model.
  double trainer_rows_per_s = 0;
  int64_t steps = cfg.get_int("bench.steps"), warmup = cfg.get_int("bench.warmup");
  {
    ModelConfig mc = model_config_from(cfg, schema.num_dense(), table_sizes_from(schema));
    Trainer trainer(cfg, mc);
    std::vector<data::Batch> batches;
    data::LoaderOptions o;
    o.threads = 0;
    auto src = data::open_train_source(schema, train_dir, batch, 0, 1, o);
    data::Batch b;
    while (batches.size() < 4 && src->next(b)) batches.push_back(data::slice_batch(b, 0, b.size()));
    for (int64_t i = 0; i < warmup; ++i) trainer.train_step(batches[static_cast<size_t>(i) % batches.size()]);
    std::vector<double> step_s;
    for (int64_t i = 0; i < steps; ++i)
      step_s.push_back(seconds_of([&] { trainer.train_step(batches[static_cast<size_t>(i) % batches.size()]); }));
    std::sort(step_s.begin(), step_s.end());
    trainer_rows_per_s = static_cast<double>(batches[0].size()) / step_s[step_s.size() / 2];
  }

  auto rate = [&](double s) { return static_cast<double>(rows) / s; };
  const double best = std::max({rate(bin1_s), rate(bin2_s)});
  const double raw = rate(raw_s);
  std::printf("recforge bench loader: %lld generated Criteo rows, batch %lld, %d cores, shards %.1f MB (%.0f B/row)\n",
              static_cast<long long>(rows), static_cast<long long>(batch), cores, shard_bytes / 1e6,
              static_cast<double>(shard_bytes) / static_cast<double>(rows));
  std::printf("%-34s %14s %10s\n", "stage", "rows/s", "MB/s");
  auto line = [&](const char* name, double s, double bytes) {
    std::printf("%-34s %14.0f %10.1f\n", name, rate(s), bytes / s / 1e6);
  };
  line("tsv parse (1 thread)", tsv_s, static_cast<double>(fs::file_size(tsv)));
  line("preprocess (1 thread)", prep1_s, static_cast<double>(fs::file_size(tsv)));
  std::string pn = "preprocess (" + std::to_string(cores) + " threads)";
  line(pn.c_str(), prepn_s, static_cast<double>(fs::file_size(tsv)));
  line("shards, shuffled, inline decode", bin0_s, static_cast<double>(shard_bytes));
  line("shards, shuffled, 1 worker", bin1_s, static_cast<double>(shard_bytes));
  line("shards, shuffled, 2 workers", bin2_s, static_cast<double>(shard_bytes));
  line("raw read() of the shard files", raw_s, static_cast<double>(shard_bytes));
  line("raw pread() of their blocks, shuffled", raw_blocks_s, static_cast<double>(shard_bytes));
  std::printf("%-34s %14.0f %10s  (%s, %d threads, median step of %lld)\n", "DLRM trainer consumption",
              trainer_rows_per_s, "-", cfg.get_string("model.type").c_str(), num_threads(), static_cast<long long>(steps));
  std::printf("shards vs trainer: %.1fx (target >= 5x); shards vs raw read: %.2fx of raw (target >= 0.5x)\n",
              best / trainer_rows_per_s, best / raw);
  std::printf("{\"bench\": \"loader\", \"rows\": %lld, \"batch\": %lld, \"cores\": %d, \"tsv_rows_per_s\": %.1f, "
              "\"preprocess_rows_per_s_1t\": %.1f, \"preprocess_rows_per_s\": %.1f, \"binary_rows_per_s_inline\": %.1f, "
              "\"binary_rows_per_s_1w\": %.1f, \"binary_rows_per_s_2w\": %.1f, \"rows_per_s\": %.1f, "
              "\"raw_rows_per_s\": %.1f, \"raw_block_order_rows_per_s\": %.1f, \"trainer_rows_per_s\": %.1f, "
              "\"ratio_to_trainer\": %.3f, \"ratio_to_raw\": %.3f}\n",
              static_cast<long long>(rows), static_cast<long long>(batch), cores, rate(tsv_s), rate(prep1_s),
              rate(prepn_s), rate(bin0_s), rate(bin1_s), rate(bin2_s), best, raw, rate(raw_blocks_s), trainer_rows_per_s,
              best / trainer_rows_per_s, best / raw);
  return 0;
}

}  // namespace rf::cli
