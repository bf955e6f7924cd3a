// Shard format: round trip, checksums, and the message of every kind of bad shard.
#include <cstring>
#include <fstream>

#include <gtest/gtest.h>

#include "dataloader/shard_format.h"
#include "dataloader/shard_reader.h"
#include "tests/loader/loader_util.h"

namespace rf::data {
namespace {

using testing::TempDir;

std::string read_file(const std::string& p) {
  std::ifstream in(p, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), {});
}
void write_file(const std::string& p, const std::string& s) { std::ofstream(p, std::ios::binary) << s; }

std::string error_of(const std::string& path, const ColumnSchema* schema = nullptr, bool read_all = false) {
  try {
    ShardDataset d(path, schema);
    if (read_all) {
      for (int i = 0; i < d.num_shards(); ++i) d.shard(i).verify_all();
    }
  } catch (const DataError& e) {
    return e.what();
  }
  return "(no error)";
}

TEST(ShardFormat, ChecksumIsStableAndSensitive) {
  std::string a(1000, 'x');
  uint64_t h = checksum64(a.data(), a.size());
  EXPECT_EQ(h, checksum64(a.data(), a.size()));
  for (size_t i : {0u, 31u, 32u, 500u, 999u}) {
    std::string b = a;
    b[i] ^= 1;
    EXPECT_NE(h, checksum64(b.data(), b.size())) << i;
  }
  EXPECT_NE(checksum64(a.data(), 999), checksum64(a.data(), 1000));
}

TEST(ShardFormat, RoundTripKeepsEveryField) {
  TempDir dir;
  testing::write_coded_shards(dir.path, {1000}, 64);
  ColumnSchema schema = testing::coded_schema();
  ShardDataset d(dir.path, &schema);
  EXPECT_EQ(d.num_rows(), 1000);
  EXPECT_EQ(d.table_sizes(), (std::vector<int64_t>{1000, 1000, 1000}));
  std::vector<RowRef> rows;
  for (int64_t i = 0; i < 1000; ++i) rows.push_back({0, 999 - i});
  BatchBuffer buf;
  Batch b;
  d.decode(rows.data(), 1000, buf, b);
  std::vector<int64_t> ids = testing::check_and_ids(b);
  for (int64_t i = 0; i < 1000; ++i) EXPECT_EQ(ids[i], 999 - i);
  // Record: label + 2 dense + 2 cat + (count + 3 slots) multi-hot = 4 * (1 + 2 + 2 + 4) bytes.
  EXPECT_EQ(d.shard(0).layout().record_bytes(), 36u);
}

TEST(ShardErrors, Truncated) {
  TempDir dir;
  testing::write_coded_shards(dir.path, {100}, 16);
  std::string p = dir / "part-00000.rfshard";
  std::string bytes = read_file(p);
  write_file(p, bytes.substr(0, bytes.size() - 10));
  std::string e = error_of(dir.path);
  EXPECT_NE(e.find(p + ": byte " + std::to_string(bytes.size() - 10) + ": truncated shard"), std::string::npos) << e;
  EXPECT_NE(e.find("row 99 is incomplete"), std::string::npos) << e;
  write_file(p, bytes.substr(0, 20));
  e = error_of(dir.path);
  EXPECT_NE(e.find(p + ": byte 20: truncated shard"), std::string::npos) << e;
  write_file(p, bytes + "xx");
  e = error_of(dir.path);
  EXPECT_NE(e.find("2 unexpected bytes after the last of 100 rows"), std::string::npos) << e;
}

TEST(ShardErrors, BadMagicAndVersion) {
  TempDir dir;
  testing::write_coded_shards(dir.path, {10}, 16);
  std::string p = dir / "part-00000.rfshard";
  std::string bytes = read_file(p);
  std::string m = bytes;
  m[0] = 'X';
  write_file(p, m);
  std::string e = error_of(dir.path);
  EXPECT_NE(e.find(p + ": byte 0: not a recforge shard (bad magic)"), std::string::npos) << e;
  std::string v = bytes;
  v[8] = 7;
  write_file(p, v);
  e = error_of(dir.path);
  EXPECT_NE(e.find(p + ": byte 8: unsupported shard version 7"), std::string::npos) << e;
}

TEST(ShardErrors, HeaderAndBlockChecksum) {
  TempDir dir;
  testing::write_coded_shards(dir.path, {100}, 16);
  std::string p = dir / "part-00000.rfshard";
  std::string bytes = read_file(p);
  std::string h = bytes;
  h[sizeof(ShardHeader) + 8] ^= 1;  // first feature's table_rows
  write_file(p, h);
  std::string e = error_of(dir.path);
  EXPECT_NE(e.find(p + ": byte 56: header checksum mismatch"), std::string::npos) << e;

  // A flipped bit in row 40 (block 2 of 16-row blocks) is found when that block is read.
  ShardHeader hdr;
  std::memcpy(&hdr, bytes.data(), sizeof hdr);
  std::string r = bytes;
  r[hdr.header_bytes + 40 * hdr.record_bytes + 5] ^= 4;
  write_file(p, r);
  ShardDataset d(p);  // the header is intact
  BatchBuffer buf;
  Batch b;
  RowRef ok{0, 3}, bad{0, 33};
  EXPECT_NO_THROW(d.decode(&ok, 1, buf, b));
  try {
    d.decode(&bad, 1, buf, b);
    FAIL() << "no error";
  } catch (const DataError& ex) {
    std::string want = p + ": byte " + std::to_string(hdr.header_bytes + 32 * hdr.record_bytes) +
                       ": block 2 (rows 32..47): checksum mismatch";
    EXPECT_NE(std::string(ex.what()).find(want), std::string::npos) << ex.what();
  }
}

TEST(ShardErrors, RecordSizeMismatch) {
  TempDir dir;
  testing::write_coded_shards(dir.path, {10}, 16);
  std::string p = dir / "part-00000.rfshard";
  // The header's record size disagrees with its own layout (header checksum recomputed).
  std::string bytes = read_file(p);
  ShardHeader hdr;
  std::memcpy(&hdr, bytes.data(), sizeof hdr);
  hdr.record_bytes += 4;
  hdr.header_checksum = 0;
  std::memcpy(bytes.data(), &hdr, sizeof hdr);
  hdr.header_checksum = checksum64(bytes.data(), hdr.header_bytes);
  std::memcpy(bytes.data(), &hdr, sizeof hdr);
  write_file(p, bytes);
  std::string e = error_of(dir.path);
  EXPECT_NE(e.find(p + ": byte 24: record size 40 does not match the layout's 36 bytes"), std::string::npos) << e;

  // A good shard whose layout is not the config's.
  testing::write_coded_shards(dir.path, {10}, 16);
  ColumnSchema other = ColumnSchema::parse({"label", "dense*3", "cat*2", "multi*1"});
  e = error_of(dir.path, &other);
  EXPECT_NE(e.find(p + ": record layout does not match the config: shard has 2 dense features, the config 3"),
            std::string::npos)
      << e;
  ColumnSchema kinds = ColumnSchema::parse({"label", "dense*2", "cat*3"});
  e = error_of(dir.path, &kinds);
  EXPECT_NE(e.find("sparse feature 3 is multi-hot in the shard, categorical in the config"), std::string::npos) << e;
}

TEST(ShardErrors, RowOutsideItsTableWithValidChecksums) {
  TempDir dir;
  testing::write_coded_shards(dir.path, {40}, 16);
  std::string p = dir / "part-00000.rfshard";
  std::string bytes = read_file(p);
  ShardLayout layout;
  std::vector<uint64_t> sums;
  decode_shard_header(p, reinterpret_cast<const uint8_t*>(bytes.data()), bytes.size(), bytes.size(), &layout, &sums);
  const size_t hb = layout.header_bytes(), stride = layout.record_bytes();
  const size_t at = hb + 20 * stride + layout.feature_offsets()[1];
  uint32_t v = 5000;  // the table has 1000 rows
  std::memcpy(bytes.data() + at, &v, 4);
  for (size_t b = 0; b < sums.size(); ++b) {
    size_t rows = std::min<size_t>(16, 40 - 16 * b);
    sums[b] = checksum64(bytes.data() + hb + 16 * b * stride, rows * stride);
  }
  std::vector<uint8_t> header = encode_shard_header(layout, sums);
  std::memcpy(bytes.data(), header.data(), header.size());
  write_file(p, bytes);
  std::string e = error_of(dir.path, nullptr, /*read_all=*/true);
  EXPECT_NE(e.find(p + ": byte " + std::to_string(at) + ": row 20: sparse feature 2: row 5000 outside its table of 1000 rows"),
            std::string::npos)
      << e;
}

TEST(ShardErrors, EmptyDirectoryAndMissingPath) {
  TempDir dir;
  EXPECT_NE(error_of(dir.path).find("no .rfshard files"), std::string::npos);
  EXPECT_NE(error_of(dir / "nope").find("not found"), std::string::npos);
}

}  // namespace
}  // namespace rf::data
