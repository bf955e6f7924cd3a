// Element types recforge tensors hold, the 16-bit float storage types, and their conversions to and
// from fp32 (round to nearest, ties to even). Device-side code uses CUDA's own __half/__nv_bfloat16,
// which have the same bit layout.
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <string>
#include <string_view>

#if defined(__CUDACC__)
#define RF_HOST_DEVICE __host__ __device__
#else
#define RF_HOST_DEVICE
#endif

namespace rf {

enum class DType : uint8_t { kF32, kF16, kBF16, kI32, kI64 };

size_t dtype_size(DType t);
const char* dtype_name(DType t);           // "fp32", "fp16", "bf16", "int32", "int64"
DType parse_dtype(std::string_view name);  // inverse of dtype_name; throws ConfigError
inline bool is_floating(DType t) { return t == DType::kF32 || t == DType::kF16 || t == DType::kBF16; }

// 16-bit storage types on the host. Arithmetic is done in fp32 after conversion.
struct bf16 {
  uint16_t bits;
};
struct f16 {
  uint16_t bits;
};

RF_HOST_DEVICE inline uint32_t f32_bits(float f) {
  uint32_t u;
  memcpy(&u, &f, 4);
  return u;
}
RF_HOST_DEVICE inline float bits_f32(uint32_t u) {
  float f;
  memcpy(&f, &u, 4);
  return f;
}

// fp32 -> bf16, round to nearest even; NaN stays a (quiet) NaN.
RF_HOST_DEVICE inline bf16 to_bf16(float f) {
  uint32_t u = f32_bits(f);
  if ((u & 0x7fffffffu) > 0x7f800000u) return bf16{static_cast<uint16_t>((u >> 16) | 0x0040u)};
  uint32_t rounding = 0x7fffu + ((u >> 16) & 1u);
  return bf16{static_cast<uint16_t>((u + rounding) >> 16)};
}
RF_HOST_DEVICE inline float to_f32(bf16 h) { return bits_f32(static_cast<uint32_t>(h.bits) << 16); }

// fp32 -> IEEE binary16, round to nearest even, with subnormals, overflow to inf, NaN kept.
RF_HOST_DEVICE inline f16 to_f16(float f) {
  uint32_t u = f32_bits(f);
  uint32_t sign = (u >> 16) & 0x8000u;
  uint32_t abs = u & 0x7fffffffu;
  if (abs > 0x7f800000u) return f16{static_cast<uint16_t>(sign | 0x7e00u)};  // NaN
  if (abs >= 0x477ff000u) return f16{static_cast<uint16_t>(sign | 0x7c00u)};  // rounds to >= 65520: inf
  if (abs < 0x38800000u) {  // below 2^-14: subnormal half (or zero)
    // Scale so that the half subnormal's unit (2^-24) is the integer 1, then round to even.
    int exp = static_cast<int>(abs >> 23);
    if (exp < 102) return f16{static_cast<uint16_t>(sign)};  // below half of the smallest subnormal
    uint32_t mant = (abs & 0x7fffffu) | 0x800000u;
    int shift = 126 - exp;  // value / 2^-24 = mant * 2^(exp - 126)
    uint32_t q = mant >> shift;
    uint32_t rem = mant & ((1u << shift) - 1u);
    uint32_t half = 1u << (shift - 1);
    if (rem > half || (rem == half && (q & 1u))) ++q;
    return f16{static_cast<uint16_t>(sign | q)};
  }
  // Normal: rebias exponent (127 -> 15) and round the 13 dropped mantissa bits to even.
  uint32_t r = abs - 0x38000000u;  // exponent - 112
  uint32_t q = r >> 13;
  uint32_t rem = r & 0x1fffu;
  if (rem > 0x1000u || (rem == 0x1000u && (q & 1u))) ++q;  // a carry into the exponent is correct
  return f16{static_cast<uint16_t>(sign | q)};
}
RF_HOST_DEVICE inline float to_f32(f16 h) {
  uint32_t sign = static_cast<uint32_t>(h.bits & 0x8000u) << 16;
  uint32_t exp = (h.bits >> 10) & 0x1fu;
  uint32_t mant = h.bits & 0x3ffu;
  if (exp == 0x1fu) return bits_f32(sign | 0x7f800000u | (mant << 13));  // inf / NaN
  if (exp == 0) {
    if (mant == 0) return bits_f32(sign);
    // subnormal: value = mant * 2^-24, exact in fp32
    float v = static_cast<float>(mant) * 5.9604644775390625e-8f;
    return sign ? -v : v;
  }
  return bits_f32(sign | ((exp + 112u) << 23) | (mant << 13));
}

// Maps a C++ element type to its DType.
template <class T>
struct dtype_of;
template <> struct dtype_of<float> { static constexpr DType value = DType::kF32; };
template <> struct dtype_of<f16> { static constexpr DType value = DType::kF16; };
template <> struct dtype_of<bf16> { static constexpr DType value = DType::kBF16; };
template <> struct dtype_of<int32_t> { static constexpr DType value = DType::kI32; };
template <> struct dtype_of<int64_t> { static constexpr DType value = DType::kI64; };
template <class T>
inline constexpr DType dtype_v = dtype_of<T>::value;

}  // namespace rf
