// Shard header encoding/decoding and the block checksum. Every check names the file and byte offset.
#include "dataloader/shard_format.h"

#include <cstring>

#include "src/core/error.h"

namespace rf::data {

namespace {

constexpr uint64_t kP1 = 0x9E3779B185EBCA87ull;
constexpr uint64_t kP2 = 0xC2B2AE3D27D4EB4Full;
constexpr uint64_t kP3 = 0x165667B19E3779F9ull;

inline uint64_t rotl(uint64_t x, int r) { return (x << r) | (x >> (64 - r)); }
inline uint64_t round64(uint64_t acc, uint64_t w) { return rotl(acc + w * kP2, 31) * kP1; }
inline uint64_t load64(const uint8_t* p) {
  uint64_t v;
  std::memcpy(&v, p, 8);
  return v;
}

size_t round_up(size_t x, size_t to) { return (x + to - 1) / to * to; }

[[noreturn]] void bad(const std::string& path, uint64_t byte, const std::string& what) {
  throw DataError(path + ": byte " + std::to_string(byte) + ": " + what);
}

}  // namespace

uint64_t checksum64(const void* data, size_t bytes, uint64_t seed) {
  const uint8_t* p = static_cast<const uint8_t*>(data);
  const uint8_t* end = p + bytes;
  uint64_t a = seed + kP1 + kP2, b = seed + kP2, c = seed, d = seed - kP1;
  while (end - p >= 32) {
    a = round64(a, load64(p));
    b = round64(b, load64(p + 8));
    c = round64(c, load64(p + 16));
    d = round64(d, load64(p + 24));
    p += 32;
  }
  uint64_t h = rotl(a, 1) + rotl(b, 7) + rotl(c, 12) + rotl(d, 18) + static_cast<uint64_t>(bytes);
  while (end - p >= 8) {
    h ^= round64(0, load64(p));
    h = rotl(h, 27) * kP1 + kP3;
    p += 8;
  }
  while (p < end) {
    h ^= static_cast<uint64_t>(*p++) * kP3;
    h = rotl(h, 11) * kP1;
  }
  h ^= h >> 33;
  h *= kP2;
  h ^= h >> 29;
  h *= kP3;
  return h ^ (h >> 32);
}

uint32_t ShardLayout::record_bytes() const {
  uint64_t bytes = 4 + 4ull * num_dense;
  for (const FeatureLayout& f : features) bytes += f.kind == FeatureKind::kMultiHot ? 4ull * (1 + f.max_bag) : 4;
  return static_cast<uint32_t>(bytes);
}

size_t ShardLayout::header_bytes() const {
  return round_up(sizeof(ShardHeader) + features.size() * sizeof(FeatureLayout) + 8 * num_blocks(), 64);
}

std::vector<uint32_t> ShardLayout::feature_offsets() const {
  std::vector<uint32_t> off;
  uint32_t o = 4 + 4 * num_dense;
  for (const FeatureLayout& f : features) {
    off.push_back(o);
    o += f.kind == FeatureKind::kMultiHot ? 4 * (1 + f.max_bag) : 4;
  }
  return off;
}

ShardLayout layout_for(const ColumnSchema& schema, const std::vector<uint32_t>& max_bag, uint32_t block_rows) {
  ShardLayout l;
  l.num_dense = static_cast<uint32_t>(schema.num_dense());
  l.has_label = schema.has_label();
  l.block_rows = block_rows;
  std::vector<bool> multi = schema.sparse_is_multi_hot();
  for (int f = 0; f < schema.num_sparse(); ++f) {
    int64_t rows = schema.buckets(f);
    if (rows > (int64_t{1} << 32))
      throw ConfigError("[data] hash_buckets: " + std::to_string(rows) + " rows do not fit the shards' u32 rows");
    FeatureLayout fl{multi[f] ? FeatureKind::kMultiHot : FeatureKind::kCategorical,
                     multi[f] ? std::max<uint32_t>(1, f < static_cast<int>(max_bag.size()) ? max_bag[f] : 1) : 1,
                     static_cast<uint64_t>(rows)};
    l.features.push_back(fl);
  }
  return l;
}

std::vector<uint8_t> encode_shard_header(const ShardLayout& layout, const std::vector<uint64_t>& block_checksums) {
  RF_CHECK(block_checksums.size() == layout.num_blocks(), "encode_shard_header: ", block_checksums.size(),
           " block checksums for ", layout.num_blocks(), " blocks");
  std::vector<uint8_t> out(layout.header_bytes(), 0);
  ShardHeader h{};
  std::memcpy(h.magic, kShardMagic, 8);
  h.version = kShardVersion;
  h.header_bytes = static_cast<uint32_t>(out.size());
  h.num_rows = layout.num_rows;
  h.record_bytes = layout.record_bytes();
  h.num_dense = layout.num_dense;
  h.num_sparse = static_cast<uint32_t>(layout.features.size());
  h.block_rows = layout.block_rows;
  h.flags = layout.has_label ? 1u : 0u;
  h.shard_checksum = checksum64(block_checksums.data(), 8 * block_checksums.size());
  h.header_checksum = 0;
  uint8_t* p = out.data();
  std::memcpy(p + sizeof h, layout.features.data(), layout.features.size() * sizeof(FeatureLayout));
  std::memcpy(p + sizeof h + layout.features.size() * sizeof(FeatureLayout), block_checksums.data(),
              8 * block_checksums.size());
  std::memcpy(p, &h, sizeof h);
  h.header_checksum = checksum64(p, out.size());
  std::memcpy(p, &h, sizeof h);
  return out;
}

void decode_shard_header(const std::string& path, const uint8_t* data, size_t size, uint64_t file_bytes,
                         ShardLayout* layout, std::vector<uint64_t>* block_checksums) {
  if (size < sizeof(ShardHeader))
    bad(path, size, "truncated shard: " + std::to_string(file_bytes) + " bytes, a header needs " +
                        std::to_string(sizeof(ShardHeader)));
  ShardHeader h;
  std::memcpy(&h, data, sizeof h);
  if (std::memcmp(h.magic, kShardMagic, 8) != 0) bad(path, 0, "not a recforge shard (bad magic)");
  if (h.version != kShardVersion)
    bad(path, 8, "unsupported shard version " + std::to_string(h.version) + " (this build reads version " +
                     std::to_string(kShardVersion) + ")");
  if (h.block_rows == 0) bad(path, 40, "block_rows is 0");
  if (h.num_sparse > 65536) bad(path, 36, "implausible sparse feature count " + std::to_string(h.num_sparse));
  if (h.num_dense > 65536) bad(path, 32, "implausible dense feature count " + std::to_string(h.num_dense));
  uint64_t blocks = (h.num_rows + h.block_rows - 1) / h.block_rows;
  uint64_t need = sizeof(ShardHeader) + uint64_t{h.num_sparse} * sizeof(FeatureLayout) + 8 * blocks;
  if (h.num_rows > (uint64_t{1} << 48) || h.header_bytes < need || h.header_bytes % 64 != 0)
    bad(path, 12, "header size " + std::to_string(h.header_bytes) + " does not fit " + std::to_string(h.num_rows) +
                      " rows and " + std::to_string(h.num_sparse) + " sparse features");
  if (size < h.header_bytes)
    bad(path, size, "truncated shard: header of " + std::to_string(h.header_bytes) + " bytes, file has " +
                        std::to_string(file_bytes));
  {
    std::vector<uint8_t> copy(data, data + h.header_bytes);
    ShardHeader zeroed = h;
    zeroed.header_checksum = 0;
    std::memcpy(copy.data(), &zeroed, sizeof zeroed);
    uint64_t sum = checksum64(copy.data(), copy.size());
    if (sum != h.header_checksum) bad(path, offsetof(ShardHeader, header_checksum), "header checksum mismatch");
  }
  ShardLayout l;
  l.num_rows = h.num_rows;
  l.num_dense = h.num_dense;
  l.block_rows = h.block_rows;
  l.has_label = (h.flags & 1u) != 0;
  l.features.resize(h.num_sparse);
  std::memcpy(l.features.data(), data + sizeof h, h.num_sparse * sizeof(FeatureLayout));
  for (uint32_t f = 0; f < h.num_sparse; ++f) {
    const FeatureLayout& fl = l.features[f];
    uint64_t at = sizeof h + f * sizeof(FeatureLayout);
    if (fl.kind != FeatureKind::kCategorical && fl.kind != FeatureKind::kMultiHot)
      bad(path, at, "sparse feature " + std::to_string(f + 1) + ": unknown kind " + std::to_string(static_cast<uint32_t>(fl.kind)));
    if (fl.max_bag == 0 || fl.max_bag > (1u << 20) || (fl.kind == FeatureKind::kCategorical && fl.max_bag != 1))
      bad(path, at + 4, "sparse feature " + std::to_string(f + 1) + ": bad bag capacity " + std::to_string(fl.max_bag));
    if (fl.table_rows < 1 || fl.table_rows > (uint64_t{1} << 32))
      bad(path, at + 8, "sparse feature " + std::to_string(f + 1) + ": bad table size " + std::to_string(fl.table_rows));
  }
  uint64_t record_bytes = 4 + 4ull * l.num_dense;
  for (const FeatureLayout& fl : l.features) record_bytes += fl.kind == FeatureKind::kMultiHot ? 4ull * (1 + fl.max_bag) : 4;
  if (record_bytes != h.record_bytes)
    bad(path, 24, "record size " + std::to_string(h.record_bytes) + " does not match the layout's " +
                      std::to_string(record_bytes) + " bytes");
  // Compared by division: num_rows * record_bytes may not fit 64 bits in a corrupt header.
  const uint64_t body = file_bytes - h.header_bytes;
  const uint64_t whole_rows = body / record_bytes;
  if (whole_rows < h.num_rows)
    bad(path, file_bytes, "truncated shard: " + std::to_string(h.num_rows) + " rows of " +
                              std::to_string(h.record_bytes) + " bytes need " +
                              std::to_string(h.header_bytes + h.num_rows * record_bytes) + " bytes, file has " +
                              std::to_string(file_bytes) + " (row " + std::to_string(whole_rows) + " is incomplete)");
  const uint64_t expect = h.header_bytes + h.num_rows * record_bytes;
  if (file_bytes > expect)
    bad(path, expect, std::to_string(file_bytes - expect) + " unexpected bytes after the last of " +
                          std::to_string(h.num_rows) + " rows");
  std::vector<uint64_t> sums(blocks);
  std::memcpy(sums.data(), data + sizeof h + h.num_sparse * sizeof(FeatureLayout), 8 * blocks);
  if (checksum64(sums.data(), 8 * blocks) != h.shard_checksum)
    bad(path, offsetof(ShardHeader, shard_checksum), "shard checksum mismatch over the block checksums");
  *layout = std::move(l);
  *block_checksums = std::move(sums);
}

void check_layout_matches(const std::string& path, const ShardLayout& layout, const ColumnSchema& schema) {
  auto fail = [&](const std::string& what) {
    throw DataError(path + ": record layout does not match the config: " + what);
  };
  if (layout.num_dense != static_cast<uint32_t>(schema.num_dense()))
    fail("shard has " + std::to_string(layout.num_dense) + " dense features, the config " +
         std::to_string(schema.num_dense()));
  if (layout.features.size() != static_cast<size_t>(schema.num_sparse()))
    fail("shard has " + std::to_string(layout.features.size()) + " sparse features, the config " +
         std::to_string(schema.num_sparse()));
  std::vector<bool> multi = schema.sparse_is_multi_hot();
  for (size_t f = 0; f < multi.size(); ++f) {
    bool m = layout.features[f].kind == FeatureKind::kMultiHot;
    if (m != multi[f])
      fail("sparse feature " + std::to_string(f + 1) + " is " + (m ? "multi-hot" : "categorical") +
           " in the shard, " + (multi[f] ? "multi-hot" : "categorical") + " in the config");
  }
  if (layout.has_label != schema.has_label())
    fail(std::string("the shard ") + (layout.has_label ? "has" : "has no") + " label column, the config " +
         (schema.has_label() ? "has one" : "has none"));
}

}  // namespace rf::data
