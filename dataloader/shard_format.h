// The binary shard format written by `recforge preprocess` and read by the shard reader: one raw file
// per shard (`part-NNNNN.rfshard`), a versioned header, then fixed-stride records. Raw files rather
// than HDF5 datasets: a record is found by arithmetic (header_bytes + row * record_bytes), so reading
// a shuffle block is one memcpy out of an mmap with no library, chunk cache or per-call dataset lookup
// in between (figures in docs/loader.md and `recforge bench loader`); the format is small enough to
// document here and to fuzz.
//
// Layout (little-endian):
//   ShardHeader                                 64 bytes
//   FeatureLayout[num_sparse]                   16 bytes each: kind, max_bag, table_rows
//   uint64 block_checksum[ceil(rows/block_rows)] checksum64 of each block's record bytes
//   zero padding to a multiple of 64            -> header_bytes
//   records[num_rows]                           record_bytes each
// A record: f32 label, f32 dense[num_dense] (already log(1 + max(x, 0))), then per sparse feature:
//   categorical: u32 row
//   multi-hot:   u32 count, u32 row[max_bag] (count <= max_bag, unused slots 0)
// Multi-hot bags are stored as a fixed-capacity bag with a count so that every record keeps one stride
// (random access and shuffling by row index, no offsets table); max_bag is the largest bag of the shard,
// so the padding is bounded by what the data holds. Rows are u32: tables above 2^32 rows are refused.
// The shard's checksum is checksum64 over its block checksums, so a reader can verify a block at a time
// (the blocks it touches) and still have one number per shard.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "dataloader/schema.h"

namespace rf::data {

inline constexpr char kShardMagic[8] = {'R', 'F', 'S', 'H', 'A', 'R', 'D', '\0'};
inline constexpr uint32_t kShardVersion = 1;
inline constexpr const char* kShardExtension = ".rfshard";

struct ShardHeader {
  char magic[8];
  uint32_t version;
  uint32_t header_bytes;      // offset of the first record
  uint64_t num_rows;
  uint32_t record_bytes;
  uint32_t num_dense;
  uint32_t num_sparse;
  uint32_t block_rows;        // rows per checksum (and shuffle) block
  uint32_t flags;             // bit 0: the data had a label column
  uint32_t reserved;
  uint64_t shard_checksum;    // checksum64 of block_checksum[]
  uint64_t header_checksum;   // checksum64 of the header bytes before header_bytes, this field zeroed
};
static_assert(sizeof(ShardHeader) == 64);

enum class FeatureKind : uint32_t { kCategorical = 0, kMultiHot = 1 };

struct FeatureLayout {
  FeatureKind kind;
  uint32_t max_bag;    // 1 for categorical
  uint64_t table_rows; // rows of this feature's table (hash buckets, or vocabulary size + 2)
};
static_assert(sizeof(FeatureLayout) == 16);

// Everything a reader needs about one shard, checked against the file.
struct ShardLayout {
  uint64_t num_rows = 0;
  uint32_t num_dense = 0;
  uint32_t block_rows = 1024;
  bool has_label = true;
  std::vector<FeatureLayout> features;

  uint32_t record_bytes() const;
  size_t header_bytes() const;       // rounded up to 64
  uint64_t num_blocks() const { return block_rows ? (num_rows + block_rows - 1) / block_rows : 0; }
  // Byte offset of each sparse feature inside a record (after label and dense).
  std::vector<uint32_t> feature_offsets() const;
};

// The layout a schema produces for given bag capacities (one per sparse feature; categorical -> 1).
ShardLayout layout_for(const ColumnSchema& schema, const std::vector<uint32_t>& max_bag, uint32_t block_rows);

// 64-bit checksum of a byte range: four independent multiply-rotate lanes over 8-byte words (the
// xxHash64 round structure), folded with the length. Runs at several GB/s; not cryptographic.
uint64_t checksum64(const void* data, size_t bytes, uint64_t seed = 0);

// Serialises the header for `layout` and the given block checksums (exactly layout.num_blocks()).
std::vector<uint8_t> encode_shard_header(const ShardLayout& layout, const std::vector<uint64_t>& block_checksums);

// Parses and checks the first `size` bytes of a shard file of `file_bytes` bytes named `path`.
// Throws DataError "path: byte N: ..." for a short header, bad magic, unsupported version, header
// checksum mismatch, inconsistent record size, or a file size that does not match the row count
// (truncated or trailing bytes). On success fills `layout` and `block_checksums`.
void decode_shard_header(const std::string& path, const uint8_t* data, size_t size, uint64_t file_bytes,
                         ShardLayout* layout, std::vector<uint64_t>* block_checksums);

// Throws DataError naming `path` when the shard's record layout does not match what `schema` expects
// (dense count, number and kind of sparse features, label column).
void check_layout_matches(const std::string& path, const ShardLayout& layout, const ColumnSchema& schema);

}  // namespace rf::data
