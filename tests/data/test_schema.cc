// Column spec parsing, presets, validation and the token hash.
#include <gtest/gtest.h>

#include "dataloader/hash.h"
#include "dataloader/schema.h"
#include "src/core/error.h"

namespace rf::data {
namespace {

TEST(Schema, ParsesCountsAndNames) {
  ColumnSchema s = ColumnSchema::parse({"label", "dense*6", "cat*6", "multi*1"});
  ASSERT_EQ(s.num_columns(), 14);
  EXPECT_EQ(s.num_dense(), 6);
  EXPECT_EQ(s.num_sparse(), 7);
  EXPECT_TRUE(s.has_label());
  EXPECT_EQ(s.columns[0].kind, ColumnKind::kLabel);
  EXPECT_EQ(s.columns[2].name, "dense 2");
  EXPECT_EQ(s.columns[7].kind, ColumnKind::kCategorical);
  EXPECT_EQ(s.columns[7].name, "cat 1");
  EXPECT_EQ(s.columns[13].kind, ColumnKind::kMultiHot);
  EXPECT_EQ(s.columns[13].name, "multi 1");
  EXPECT_EQ(s.sparse_is_multi_hot(), std::vector<bool>({false, false, false, false, false, false, true}));
}

TEST(Schema, NamedColumnsAndSynonyms) {
  ColumnSchema s = ColumnSchema::parse({"ignore", "label", "categorical:user", "multi_hot:genres", "dense:age"});
  EXPECT_EQ(s.columns[0].kind, ColumnKind::kIgnore);
  EXPECT_EQ(s.sparse_names(), std::vector<std::string>({"user", "genres"}));
  EXPECT_EQ(s.dense_names(), std::vector<std::string>({"age"}));
}

TEST(Schema, BadTokensAreNamed) {
  auto message = [](std::vector<std::string> spec) {
    try {
      ColumnSchema::parse(spec);
    } catch (const ConfigError& e) {
      return std::string(e.what());
    }
    return std::string("no error");
  };
  EXPECT_NE(message({"label", "dens*13"}).find("bad token 'dens*13': unknown kind 'dens'"), std::string::npos);
  EXPECT_NE(message({"label", "dense*x"}).find("bad token 'dense*x': count 'x'"), std::string::npos);
  EXPECT_NE(message({"label", "dense*0"}).find("bad token 'dense*0'"), std::string::npos);
  EXPECT_NE(message({"label", "label"}).find("bad token 'label': more than one label"), std::string::npos);
  EXPECT_NE(message({"cat:"}).find("bad token 'cat:': empty name"), std::string::npos);
  EXPECT_NE(message({}).find("no columns"), std::string::npos);
  EXPECT_THROW(ColumnSchema::preset("avazu"), ConfigError);
}

TEST(Schema, CriteoPreset) {
  ColumnSchema s = ColumnSchema::criteo();
  ASSERT_EQ(s.num_columns(), 40);
  EXPECT_EQ(s.columns[0].kind, ColumnKind::kLabel);
  for (int c = 1; c <= 13; ++c) EXPECT_EQ(s.columns[c].kind, ColumnKind::kDense);
  for (int c = 14; c < 40; ++c) EXPECT_EQ(s.columns[c].kind, ColumnKind::kCategorical);
  EXPECT_EQ(s.num_dense(), 13);
  EXPECT_EQ(s.num_sparse(), 26);
  EXPECT_EQ(s.encoding, TokenEncoding::kHex);
  EXPECT_EQ(s.max_hex_digits, 8);
  EXPECT_NO_THROW(s.validate());
  ColumnSchema m = ColumnSchema::preset("ml-100k");
  EXPECT_EQ(m.num_columns(), 14);
  EXPECT_EQ(m.sparse_names().back(), "genres");
}

TEST(Schema, ValidatesBuckets) {
  ColumnSchema s = ColumnSchema::criteo();
  s.hash_buckets = {10, 20};
  EXPECT_THROW(s.validate(), ConfigError);
  s.hash_buckets.assign(26, 1000);
  EXPECT_NO_THROW(s.validate());
  s.hash_buckets[3] = 1;
  EXPECT_THROW(s.validate(), ConfigError);
  s.hash_buckets = {7};
  EXPECT_EQ(s.buckets(25), 7);
}

TEST(Hash, FixedValuesDeterministicAndInRange) {
  // Published FNV-1a 64 test vectors.
  EXPECT_EQ(fnv1a64(""), 0xcbf29ce484222325ull);
  EXPECT_EQ(fnv1a64("a"), 0xaf63dc4c8601ec8cull);
  EXPECT_EQ(fnv1a64("foobar"), 0x85944171f73967e8ull);
  // splitmix64 of 0 (first output of the reference generator seeded with 0).
  EXPECT_EQ(splitmix64(0), 0xe220a8397b1dcdafull);
  for (int64_t buckets : {2, 3, 1000, 100003}) {
    for (uint64_t v = 0; v < 5000; ++v) {
      int64_t r = hex_value_row(v, buckets);
      EXPECT_GE(r, 1);
      EXPECT_LT(r, buckets);
      EXPECT_EQ(r, hex_value_row(v, buckets));
    }
  }
  EXPECT_EQ(hex_value_row(0x68fd1e64, 1000), 1 + static_cast<int64_t>(splitmix64(0x68fd1e64) % 999));
  EXPECT_EQ(string_token_row("a", 11), 1 + static_cast<int64_t>(0xaf63dc4c8601ec8cull % 10));
}

}  // namespace
}  // namespace rf::data
