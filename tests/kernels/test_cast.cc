// The cast op against src/core/dtype.h's scalar conversions, bit for bit: every bf16 and fp16 value
// exhaustively, fp32 sources on random bit patterns plus the special values (signed zeros,
// subnormals, rounding ties, overflow, inf, NaN).
#include <gtest/gtest.h>

#include <cstring>
#include <limits>

#include "kernels/cast.h"
#include "tests/kernels/test_util.h"

namespace rf::test {
namespace {

std::vector<uint16_t> all_16bit() {
  std::vector<uint16_t> v(65536);
  for (uint32_t i = 0; i < 65536; ++i) v[i] = static_cast<uint16_t>(i);
  return v;
}

Tensor bits_tensor(const std::vector<uint16_t>& bits, DType dt) {
  Tensor t = Tensor::empty({static_cast<int64_t>(bits.size())}, dt);
  std::memcpy(t.raw(), bits.data(), bits.size() * 2);
  return t;
}

std::vector<uint16_t> bits16(const Tensor& t) {
  std::vector<uint16_t> v(static_cast<size_t>(t.numel()));
  std::memcpy(v.data(), t.raw(), v.size() * 2);
  return v;
}

std::vector<uint32_t> bits32(const Tensor& t) {
  std::vector<uint32_t> v(static_cast<size_t>(t.numel()));
  std::memcpy(v.data(), t.raw(), v.size() * 4);
  return v;
}

// fp32 inputs: random bit patterns (every exponent, NaN payloads included) and the edge cases.
std::vector<float> fp32_inputs() {
  Rng rng(1234);
  std::vector<float> v;
  for (int i = 0; i < (1 << 20); ++i) v.push_back(bits_f32(rng.bits32()));
  // Values of moderate range, where the 16-bit formats are not saturated.
  for (int i = 0; i < (1 << 16); ++i) v.push_back(static_cast<float>(rng.uniform(-70000.0, 70000.0)));
  const float inf = std::numeric_limits<float>::infinity();
  for (float f : {0.0f, -0.0f, 1.0f, -1.0f, inf, -inf, std::numeric_limits<float>::quiet_NaN(), 65504.0f, 65519.99f,
                  65520.0f, 1e-8f, -3e-8f, 5.9604645e-8f, 2.9802322e-8f, 6.1035156e-5f, 1e-40f,
                  std::numeric_limits<float>::max(), std::numeric_limits<float>::denorm_min()})
    v.push_back(f);
  // Exact bf16 and fp16 rounding ties, both parities.
  for (uint32_t base : {0x3f800000u, 0x3f810000u, 0x47000000u})
    for (uint32_t low : {0x8000u, 0x7fffu, 0x8001u, 0x1000u, 0x3000u, 0x0fffu}) v.push_back(bits_f32(base | low));
  return v;
}

TEST(Cast, Bf16ToFp32Exhaustive) {
  Tensor src = bits_tensor(all_16bit(), DType::kBF16);
  Tensor dst = Tensor::empty({65536}, DType::kF32);
  cast(src, dst);
  auto got = bits32(dst);
  for (uint32_t i = 0; i < 65536; ++i)
    ASSERT_EQ(got[i], f32_bits(to_f32(bf16{static_cast<uint16_t>(i)}))) << "bf16 bits " << i;
}

TEST(Cast, Fp16ToFp32Exhaustive) {
  Tensor src = bits_tensor(all_16bit(), DType::kF16);
  Tensor dst = Tensor::empty({65536}, DType::kF32);
  cast(src, dst);
  auto got = bits32(dst);
  for (uint32_t i = 0; i < 65536; ++i)
    ASSERT_EQ(got[i], f32_bits(to_f32(f16{static_cast<uint16_t>(i)}))) << "fp16 bits " << i;
}

TEST(Cast, Fp16AndBf16ExhaustiveBothWays) {
  for (DType from : {DType::kF16, DType::kBF16}) {
    const DType to = from == DType::kF16 ? DType::kBF16 : DType::kF16;
    Tensor src = bits_tensor(all_16bit(), from);
    Tensor dst = Tensor::empty({65536}, to);
    cast(src, dst);
    auto got = bits16(dst);
    for (uint32_t i = 0; i < 65536; ++i) {
      const uint16_t b = static_cast<uint16_t>(i);
      // Through fp32, which holds both formats exactly: one rounding.
      const uint16_t want = from == DType::kF16 ? to_bf16(to_f32(f16{b})).bits : to_f16(to_f32(bf16{b})).bits;
      ASSERT_EQ(got[i], want) << dtype_name(from) << " bits " << i;
    }
  }
}

TEST(Cast, Fp32ToHalfTypesMatchScalarRounding) {
  const std::vector<float> in = fp32_inputs();
  const int64_t n = static_cast<int64_t>(in.size());
  Tensor src = Tensor::from_vector(in, {n});
  Tensor to_bf = Tensor::empty({n}, DType::kBF16), to_h = Tensor::empty({n}, DType::kF16);
  cast(src, to_bf);
  cast(src, to_h);
  auto bf = bits16(to_bf), h = bits16(to_h);
  for (int64_t i = 0; i < n; ++i) {
    ASSERT_EQ(bf[static_cast<size_t>(i)], to_bf16(in[static_cast<size_t>(i)]).bits)
        << "fp32 bits " << std::hex << f32_bits(in[static_cast<size_t>(i)]);
    ASSERT_EQ(h[static_cast<size_t>(i)], to_f16(in[static_cast<size_t>(i)]).bits)
        << "fp32 bits " << std::hex << f32_bits(in[static_cast<size_t>(i)]);
  }
}

TEST(Cast, SameDtypeCopiesAndShapesMayDiffer) {
  Tensor src = Tensor::from_vector<float>({1, -2, 3, 4.5f, 0, 6}, {2, 3});
  Tensor dst = Tensor::empty({6}, DType::kF32);
  cast(src, dst);
  EXPECT_EQ(dst.to_vector<float>(), src.to_vector<float>());
  Tensor empty_src = Tensor::empty({0}, DType::kF32), empty_dst = Tensor::empty({0}, DType::kBF16);
  cast(empty_src, empty_dst);
}

TEST(Cast, RejectsCountMismatchAndIntegers) {
  Tensor src = Tensor::zeros({4}, DType::kF32);
  Tensor wrong = Tensor::zeros({5}, DType::kBF16), ints = Tensor::zeros({4}, DType::kI32);
  EXPECT_THROW(cast(src, wrong), ShapeError);
  EXPECT_THROW(cast(src, ints), ShapeError);
}

}  // namespace
}  // namespace rf::test
