// fp16/bf16 conversions against independent references: the compiler's _Float16 (IEEE round to
// nearest even in hardware/libgcc) for fp16, and an exact search over neighbouring bf16 values.
#include <gtest/gtest.h>

#include <cmath>
#include <random>

#include "src/core/dtype.h"
#include "src/core/error.h"

namespace rf {
namespace {

TEST(DType, SizesAndNames) {
  EXPECT_EQ(dtype_size(DType::kF32), 4u);
  EXPECT_EQ(dtype_size(DType::kBF16), 2u);
  EXPECT_EQ(dtype_size(DType::kI64), 8u);
  EXPECT_EQ(parse_dtype("bf16"), DType::kBF16);
  EXPECT_THROW(parse_dtype("float8"), ConfigError);
}

TEST(DType, F16RoundTripsEveryHalf) {
  for (uint32_t b = 0; b < 65536; ++b) {
    f16 h{static_cast<uint16_t>(b)};
    float f = to_f32(h);
    if (std::isnan(f)) {
      EXPECT_TRUE(std::isnan(to_f32(to_f16(f))));
      continue;
    }
    EXPECT_EQ(to_f16(f).bits, h.bits) << "bits " << b;
    _Float16 hw;
    std::memcpy(&hw, &h.bits, 2);
    EXPECT_EQ(static_cast<float>(hw), f) << "bits " << b;
  }
}

TEST(DType, F16MatchesCompilerRounding) {
  std::mt19937 rng(7);
  std::uniform_int_distribution<uint32_t> bits;
  for (int i = 0; i < 2000000; ++i) {
    // Random bit patterns cover subnormals, ties, overflow and NaN.
    uint32_t u = bits(rng);
    if (i % 4 == 0) u = (u & 0x807fffffu) | ((100u + (u % 50u)) << 23);  // exponents near the half range
    float f = bits_f32(u);
    if (std::isnan(f)) continue;
    _Float16 ref = static_cast<_Float16>(f);
    uint16_t ref_bits;
    std::memcpy(&ref_bits, &ref, 2);
    ASSERT_EQ(to_f16(f).bits, ref_bits) << "input bits 0x" << std::hex << u;
  }
}

// The bf16 nearest to f with ties to the even mantissa, by comparing neighbours in double.
uint16_t bf16_reference(float f) {
  uint32_t u = f32_bits(f);
  uint16_t lo = static_cast<uint16_t>(u >> 16);
  uint16_t hi = static_cast<uint16_t>(lo + 1);
  double dl = std::fabs(static_cast<double>(bits_f32(static_cast<uint32_t>(lo) << 16)) - f);
  double dh = std::fabs(static_cast<double>(bits_f32(static_cast<uint32_t>(hi) << 16)) - f);
  if (dl < dh) return lo;
  if (dh < dl) return hi;
  return (lo & 1u) ? hi : lo;
}

TEST(DType, BF16RoundsToNearestEven) {
  std::mt19937 rng(11);
  std::uniform_int_distribution<uint32_t> bits;
  for (int i = 0; i < 2000000; ++i) {
    uint32_t u = bits(rng);
    if (i % 3 == 0) u = (u & 0xffff0000u) | 0x8000u;  // exact ties
    float f = bits_f32(u);
    if (std::isnan(f) || std::isinf(f)) continue;
    if ((u & 0x7f800000u) == 0x7f000000u && (u & 0x7fffffu) > 0x7f0000u) continue;  // rounds to inf
    ASSERT_EQ(to_bf16(f).bits, bf16_reference(f)) << "input bits 0x" << std::hex << u;
  }
  EXPECT_TRUE(std::isnan(to_f32(to_bf16(NAN))));
  EXPECT_EQ(to_f32(to_bf16(1.0f)), 1.0f);
  EXPECT_TRUE(std::isinf(to_f32(to_bf16(3.4e38f))));  // rounds past the largest bf16
}

}  // namespace
}  // namespace rf
