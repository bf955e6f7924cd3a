// Checkpoint directories (see checkpoint.h). Layout of step-<N>/:
//   model.h5          parameters by name (src/io/tensor_file)
//   optimizer.h5      optimizer state tensors by name ("dense.exp_avg/top_mlp.0.weight", ...)
//   trainer_state.txt key = value lines (step, loader position, ...)
//   config.ini        the effective configuration
//   manifest.txt      format version, world size, then "file <name> <bytes> <crc32>" per file; written
//                     last, so a directory without a manifest is incomplete by construction.
#include "src/checkpoint/checkpoint.h"

#include <unistd.h>
#include <zlib.h>

#include <algorithm>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <map>
#include <sstream>

#include "src/core/error.h"
#include "src/io/tensor_file.h"

namespace rf {
namespace fs = std::filesystem;

namespace {

const char* kFiles[] = {"model.h5", "optimizer.h5", "trainer_state.txt", "config.ini"};

uint32_t file_crc32(const fs::path& path, uint64_t* bytes) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw DataError(path.string() + ": cannot open");
  std::vector<char> buf(1 << 20);
  uLong crc = crc32(0L, Z_NULL, 0);
  *bytes = 0;
  while (in) {
    in.read(buf.data(), static_cast<std::streamsize>(buf.size()));
    std::streamsize n = in.gcount();
    if (n > 0) crc = crc32(crc, reinterpret_cast<const Bytef*>(buf.data()), static_cast<uInt>(n));
    *bytes += static_cast<uint64_t>(n);
  }
  return static_cast<uint32_t>(crc);
}

void write_text(const fs::path& path, const std::string& text) {
  std::FILE* f = std::fopen(path.c_str(), "wb");
  if (!f) throw BackendError(path.string() + ": cannot write");
  bool ok = std::fwrite(text.data(), 1, text.size(), f) == text.size();
  ok = std::fflush(f) == 0 && ok;
  ok = fsync(fileno(f)) == 0 && ok;
  ok = std::fclose(f) == 0 && ok;
  if (!ok) throw BackendError(path.string() + ": write failed");
}

void fsync_path(const fs::path& path) {
  std::FILE* f = std::fopen(path.c_str(), "rb");
  if (!f) return;
  fsync(fileno(f));
  std::fclose(f);
}

std::map<std::string, std::string> read_key_values(const fs::path& path) {
  std::ifstream in(path);
  if (!in) throw DataError(path.string() + ": missing");
  std::map<std::string, std::string> kv;
  std::string line;
  while (std::getline(in, line)) {
    size_t eq = line.find(" = ");
    if (eq != std::string::npos) kv[line.substr(0, eq)] = line.substr(eq + 3);
  }
  return kv;
}

int64_t step_of(const fs::path& dir) {
  std::string name = dir.filename().string();
  if (name.rfind("step-", 0) != 0) return -1;
  try {
    return std::stoll(name.substr(5));
  } catch (...) {
    return -1;
  }
}

std::vector<fs::path> step_dirs_newest_first(const std::string& root) {
  std::vector<fs::path> dirs;
  if (!fs::is_directory(root)) return dirs;
  for (const auto& e : fs::directory_iterator(root))
    if (e.is_directory() && step_of(e.path()) >= 0) dirs.push_back(e.path());
  std::sort(dirs.begin(), dirs.end(), [](const fs::path& a, const fs::path& b) { return step_of(a) > step_of(b); });
  return dirs;
}

// Test hook: RECFORGE_FAULT_CHECKPOINT=<file>@<step> kills the process right after that file of that
// step's checkpoint is written, so tests can check that an interrupted checkpoint never loads.
void maybe_fault(const char* file, int64_t step) {
  const char* f = std::getenv("RECFORGE_FAULT_CHECKPOINT");
  if (f && std::string(f) == std::string(file) + "@" + std::to_string(step)) {
    std::fprintf(stderr, "recforge: RECFORGE_FAULT_CHECKPOINT=%s: killing the process mid-checkpoint\n", f);
    std::fflush(stderr);
    _exit(86);
  }
}

}  // namespace

static TrainerState read_trainer_state(const fs::path& d);

std::string save_checkpoint(const std::string& root, const CheckpointContents& c, int keep) {
  fs::create_directories(root);
  fs::path final_dir = fs::path(root) / ("step-" + std::to_string(c.trainer.step));
  fs::path tmp = fs::path(root) / (".tmp-step-" + std::to_string(c.trainer.step) + "-" + std::to_string(getpid()));
  fs::remove_all(tmp);
  fs::create_directories(tmp);

  save_parameters((tmp / "model.h5").string(), *c.params);
  maybe_fault("model.h5", c.trainer.step);
  NamedTensors state;
  for (const auto& [name, t] : c.optimizer_state) state.emplace_back(name, *t);
  write_tensors((tmp / "optimizer.h5").string(), state, {{"format", "recforge-optimizer-state"}});
  maybe_fault("optimizer.h5", c.trainer.step);
  std::ostringstream ts;
  ts << "step = " << c.trainer.step << "\nloader_position = " << c.trainer.loader_position
     << "\nglobal_batch = " << c.trainer.global_batch
     << "\nmodel_seed = " << c.trainer.model_seed << "\n";
  char loss[64];
  std::snprintf(loss, sizeof loss, "%a", c.trainer.last_loss);  // hex float: exact round trip
  ts << "last_loss = " << loss << "\n";
  std::snprintf(loss, sizeof loss, "%a", static_cast<double>(c.trainer.loss_scale));
  ts << "loss_scale = " << loss << "\nloss_scale_good_steps = " << c.trainer.loss_scale_good_steps
     << "\nloss_scale_skipped = " << c.trainer.loss_scale_skipped << "\n";
  write_text(tmp / "trainer_state.txt", ts.str());
  write_text(tmp / "config.ini", c.config_dump);
  maybe_fault("config.ini", c.trainer.step);

  std::ostringstream manifest;
  manifest << "format = recforge-checkpoint\nversion = " << kCheckpointFormatVersion << "\nworld_size = " << c.world_size
           << "\nstep = " << c.trainer.step << "\nsharding = " << c.trainer.sharding << "\n";
  for (const char* f : kFiles) {
    fsync_path(tmp / f);
    uint64_t bytes = 0;
    uint32_t crc = file_crc32(tmp / f, &bytes);
    char line[160];
    std::snprintf(line, sizeof line, "file %s = %llu %08x\n", f, static_cast<unsigned long long>(bytes), crc);
    manifest << line;
  }
  write_text(tmp / "manifest.txt", manifest.str());
  fsync_path(tmp);
  fs::remove_all(final_dir);
  fs::rename(tmp, final_dir);
  fsync_path(root);

  // Retention: the newest `keep` checkpoints stay.
  std::vector<fs::path> dirs = step_dirs_newest_first(root);
  for (size_t i = static_cast<size_t>(std::max(keep, 1)); i < dirs.size(); ++i) fs::remove_all(dirs[i]);
  return final_dir.string();
}

void verify_checkpoint(const std::string& dir) {
  fs::path d(dir);
  fs::path manifest = d / "manifest.txt";
  if (!fs::exists(manifest)) throw DataError(manifest.string() + ": missing (incomplete checkpoint)");
  std::map<std::string, std::string> kv = read_key_values(manifest);
  if (kv["format"] != "recforge-checkpoint") throw DataError(manifest.string() + ": not a recforge checkpoint manifest");
  if (kv["version"] != std::to_string(kCheckpointFormatVersion))
    throw DataError(manifest.string() + ": format version " + kv["version"] + ", this recforge reads version " +
                    std::to_string(kCheckpointFormatVersion));
  for (const char* f : kFiles) {
    auto it = kv.find(std::string("file ") + f);
    if (it == kv.end()) throw DataError(manifest.string() + ": no entry for " + f);
    unsigned long long want_bytes = 0;
    unsigned want_crc = 0;
    if (std::sscanf(it->second.c_str(), "%llu %x", &want_bytes, &want_crc) != 2)
      throw DataError(manifest.string() + ": malformed entry for " + f);
    fs::path p = d / f;
    if (!fs::exists(p)) throw DataError(p.string() + ": missing");
    uint64_t bytes = 0;
    uint32_t crc = file_crc32(p, &bytes);
    if (bytes != want_bytes)
      throw DataError(p.string() + ": size " + std::to_string(bytes) + " bytes, manifest says " +
                      std::to_string(want_bytes) + " (truncated?)");
    if (crc != want_crc) {
      char msg[96];
      std::snprintf(msg, sizeof msg, ": CRC32 %08x, manifest says %08x (corrupt)", crc, want_crc);
      throw DataError(p.string() + msg);
    }
  }
}

std::optional<std::string> latest_valid_checkpoint(const std::string& root, std::vector<std::string>* warnings) {
  for (const fs::path& dir : step_dirs_newest_first(root)) {
    try {
      verify_checkpoint(dir.string());
      return dir.string();
    } catch (const DataError& e) {
      if (warnings) warnings->push_back(std::string("refusing checkpoint: ") + e.what());
    }
  }
  return std::nullopt;
}

TrainerState load_checkpoint(const std::string& dir, const ParameterList& params,
                             const std::vector<std::pair<std::string, Tensor*>>& optimizer_state) {
  verify_checkpoint(dir);
  fs::path d(dir);
  load_parameters((d / "model.h5").string(), params);
  std::map<std::string, Tensor> state = read_tensors((d / "optimizer.h5").string());
  for (const auto& [name, t] : optimizer_state) {
    auto it = state.find(name);
    if (it == state.end())
      throw DataError((d / "optimizer.h5").string() + ": optimizer state '" + name +
                      "' missing (was the checkpoint written with another optimizer?)");
    if (it->second.shape() != t->shape() || it->second.dtype() != t->dtype())
      throw DataError((d / "optimizer.h5").string() + ": optimizer state '" + name + "' has shape " +
                      shape_str(it->second.shape()) + ", expected " + shape_str(t->shape()));
    t->copy_from(it->second);
  }
  return read_trainer_state(d);
}

TrainerState read_checkpoint(const std::string& dir, std::map<std::string, Tensor>* params,
                             std::map<std::string, Tensor>* optimizer_state) {
  verify_checkpoint(dir);
  fs::path d(dir);
  *params = read_tensors((d / "model.h5").string());
  *optimizer_state = read_tensors((d / "optimizer.h5").string());
  return read_trainer_state(d);
}

// The key = value fields of trainer_state.txt and the manifest's world size.
static TrainerState read_trainer_state(const fs::path& d) {
  std::map<std::string, std::string> kv = read_key_values(d / "trainer_state.txt");
  TrainerState ts;
  try {
    ts.step = std::stoll(kv.at("step"));
    ts.loader_position = kv.at("loader_position");
    ts.global_batch = std::stoll(kv.at("global_batch"));
    ts.world_size = std::stoi(read_key_values(d / "manifest.txt").at("world_size"));
    ts.model_seed = std::stoull(kv.at("model_seed"));
    ts.last_loss = std::strtod(kv.at("last_loss").c_str(), nullptr);
    ts.loss_scale = static_cast<float>(std::strtod(kv.at("loss_scale").c_str(), nullptr));
    ts.loss_scale_good_steps = std::stoi(kv.at("loss_scale_good_steps"));
    ts.loss_scale_skipped = std::stoll(kv.at("loss_scale_skipped"));
    ts.sharding = read_key_values(d / "manifest.txt").at("sharding");
  } catch (const std::exception&) {
    throw DataError((d / "trainer_state.txt").string() + ": missing or malformed field");
  }
  return ts;
}

}  // namespace rf
