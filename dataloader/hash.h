// Hashing of categorical tokens into embedding-table rows. Fixed, documented functions: a model trained
// here and served elsewhere (or checked against PyTorch) must map a token to the same row everywhere.
//   hex tokens (Criteo, ml-100k):  row = 1 + splitmix64(parsed hex value) % (buckets - 1)
//   other tokens:                  row = 1 + fnv1a64(token bytes) % (buckets - 1)
// Row 0 of every table is reserved for an empty/missing value; hashed values never land on it.
#pragma once

#include <cstdint>
#include <string_view>

namespace rf::data {

// splitmix64 finaliser (Steele, Lea, Flood 2014): a bijection on 64-bit integers with good mixing.
inline constexpr uint64_t splitmix64(uint64_t x) {
  x += 0x9E3779B97F4A7C15ull;
  x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ull;
  x = (x ^ (x >> 27)) * 0x94D049BB133111EBull;
  return x ^ (x >> 31);
}

// FNV-1a, 64-bit (offset basis 0xcbf29ce484222325, prime 0x100000001b3).
inline constexpr uint64_t fnv1a64(std::string_view s) {
  uint64_t h = 0xCBF29CE484222325ull;
  for (char c : s) {
    h ^= static_cast<uint8_t>(c);
    h *= 0x100000001B3ull;
  }
  return h;
}

// Row in [1, buckets) for a 64-bit hash; buckets >= 2.
inline constexpr int64_t bucket_of(uint64_t h, int64_t buckets) {
  return 1 + static_cast<int64_t>(h % static_cast<uint64_t>(buckets - 1));
}

inline constexpr int64_t hex_value_row(uint64_t value, int64_t buckets) {
  return bucket_of(splitmix64(value), buckets);
}
inline constexpr int64_t string_token_row(std::string_view token, int64_t buckets) {
  return bucket_of(fnv1a64(token), buckets);
}

}  // namespace rf::data
