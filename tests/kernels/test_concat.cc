// concat_columns / split_columns: the CPU op against a naive per-element loop (odd widths, many parts,
// the addend), and the CUDA op against the CPU op on the same random inputs (bit-exact: both only copy
// or do one fp32 add per element); copy_tensors on both. The CUDA cases skip without a device.
#include <gtest/gtest.h>

#include <vector>

#include "kernels/concat.h"
#include "tests/kernels/cuda_test_util.h"
#include "tests/kernels/test_util.h"

namespace rf {
namespace {

using test::Rng;

Tensor random_tensor(Rng& rng, const Shape& shape) {
  Tensor t = Tensor::empty(shape, DType::kF32);
  for (int64_t i = 0; i < t.numel(); ++i) t.data<float>()[i] = static_cast<float>(rng.uniform(-2.0, 2.0));
  return t;
}

std::vector<Tensor> random_parts(Rng& rng, int64_t rows, const std::vector<int64_t>& widths) {
  std::vector<Tensor> parts;
  for (int64_t w : widths) parts.push_back(random_tensor(rng, {rows, w}));
  return parts;
}

int64_t total(const std::vector<int64_t>& widths) {
  int64_t s = 0;
  for (int64_t w : widths) s += w;
  return s;
}

// Shapes: the DLRM interleave (26 tables of 16), DCNv2's x0 (dense + T * dim), odd widths, more parts
// than one CUDA launch takes (70 > 64), and an empty batch.
const std::vector<std::pair<int64_t, std::vector<int64_t>>> kCases = {
    {37, std::vector<int64_t>(26, 16)}, {33, {16, 416}}, {5, {1, 7, 3, 129}}, {9, std::vector<int64_t>(70, 3)},
    {0, {4, 4}}};

TEST(Concat, CpuMatchesNaiveLoop) {
  Rng rng(11);
  for (const auto& [rows, widths] : kCases) {
    std::vector<Tensor> parts = random_parts(rng, rows, widths);
    const int64_t width = total(widths);
    Tensor out = Tensor::empty({rows, width}, DType::kF32);
    concat_columns(parts, out);
    int64_t col = 0;
    for (size_t i = 0; i < parts.size(); ++i) {
      for (int64_t r = 0; r < rows; ++r)
        for (int64_t k = 0; k < widths[i]; ++k)
          ASSERT_EQ(out.data<float>()[r * width + col + k], parts[i].data<float>()[r * widths[i] + k]);
      col += widths[i];
    }
    // split(concat(parts)) == parts; with an addend, each element gets in + addend.
    Tensor addend = random_tensor(rng, {rows, width});
    std::vector<Tensor> back = random_parts(rng, rows, widths), summed = random_parts(rng, rows, widths);
    split_columns(out, nullptr, back);
    split_columns(out, &addend, summed);
    col = 0;
    for (size_t i = 0; i < parts.size(); ++i) {
      for (int64_t r = 0; r < rows; ++r)
        for (int64_t k = 0; k < widths[i]; ++k) {
          const int64_t j = r * width + col + k;
          ASSERT_EQ(back[i].data<float>()[r * widths[i] + k], parts[i].data<float>()[r * widths[i] + k]);
          ASSERT_EQ(summed[i].data<float>()[r * widths[i] + k], out.data<float>()[j] + addend.data<float>()[j]);
        }
      col += widths[i];
    }
  }
}

TEST(Concat, RefusesMismatchedShapes) {
  Tensor a = Tensor::zeros({4, 3}, DType::kF32), b = Tensor::zeros({5, 2}, DType::kF32);
  Tensor out = Tensor::zeros({4, 5}, DType::kF32);
  EXPECT_THROW(concat_columns({a, b}, out), Error);
  Tensor wide = Tensor::zeros({4, 6}, DType::kF32);
  EXPECT_THROW(concat_columns({a, a}, out), Error);
  EXPECT_THROW(split_columns(wide, nullptr, {a}), Error);
}

TEST(ConcatCuda, MatchesCpuBitForBit) {
  RF_REQUIRE_GPU();
  Rng rng(12);
  for (const auto& [rows, widths] : kCases) {
    std::vector<Tensor> parts = random_parts(rng, rows, widths), dparts;
    for (const Tensor& p : parts) dparts.push_back(test::dev(p));
    const int64_t width = total(widths);
    Tensor out = Tensor::empty({rows, width}, DType::kF32);
    concat_columns(parts, out);
    Tensor dout = test::poisoned({rows, width}, DType::kF32, test::kDev);
    concat_columns(dparts, dout);
    EXPECT_EQ(test::host(dout).to_vector<float>(), out.to_vector<float>()) << rows << " rows, " << widths.size()
                                                                             << " parts";
    Tensor addend = random_tensor(rng, {rows, width});
    const Tensor* const_addend = &addend;
    for (const Tensor* add : {static_cast<const Tensor*>(nullptr), const_addend}) {
      std::vector<Tensor> split = random_parts(rng, rows, widths), dsplit;
      for (int64_t w : widths) dsplit.push_back(test::poisoned({rows, w}, DType::kF32, test::kDev));
      split_columns(out, add, split);
      Tensor dadd = add ? test::dev(*add) : Tensor();
      split_columns(test::dev(out), add ? &dadd : nullptr, dsplit);
      for (size_t i = 0; i < split.size(); ++i)
        EXPECT_EQ(test::host(dsplit[i]).to_vector<float>(), split[i].to_vector<float>())
            << "part " << i << (add ? " with addend" : "");
    }
  }
}

// Pairs of every dtype, odd element counts, and sources at odd offsets (slices), so that the CUDA op's
// widest unit ranges from 16 bytes down to 2; more pairs than one launch takes.
std::vector<Tensor> copy_sources(Rng& rng, Device dev) {
  std::vector<Tensor> src;
  const DType types[] = {DType::kI64, DType::kF32, DType::kBF16, DType::kI32, DType::kF16};
  for (int i = 0; i < 70; ++i) {
    const DType dt = types[i % 5];
    const int64_t n = 1 + (i * 37) % 300, skip = i % 3;
    Tensor whole = Tensor::empty({n + skip}, dt);
    uint8_t* bytes = static_cast<uint8_t*>(whole.raw());
    for (size_t b = 0; b < whole.nbytes(); ++b) bytes[b] = static_cast<uint8_t>(rng.integer(0, 255));
    src.push_back(whole.to(dev).slice_rows(skip, n + skip));
  }
  return src;
}

std::vector<uint8_t> bytes_of(const Tensor& t) {
  const Tensor h = t.to(Device::cpu());
  const uint8_t* p = static_cast<const uint8_t*>(h.raw());
  return std::vector<uint8_t>(p, p + h.nbytes());
}

TEST(CopyTensors, CopiesEveryPairAndRefusesMismatches) {
  Rng rng(41);
  const std::vector<Tensor> src = copy_sources(rng, Device::cpu());
  std::vector<Tensor> dst;
  for (const Tensor& t : src) dst.push_back(Tensor::zeros(t.shape(), t.dtype()));
  copy_tensors(src, dst);
  for (size_t i = 0; i < src.size(); ++i) EXPECT_EQ(bytes_of(dst[i]), bytes_of(src[i])) << "pair " << i;
  EXPECT_THROW(copy_tensors({src[0]}, {Tensor::zeros(src[0].shape(), DType::kF32)}), ShapeError);
  EXPECT_THROW(copy_tensors({src[0]}, {}), Error);
}

TEST(CopyTensorsCuda, CopiesEveryPairInOneLaunchPerSixtyFour) {
  RF_REQUIRE_GPU();
  Rng rng(42);
  const std::vector<Tensor> src = copy_sources(rng, Device::cuda(0));
  std::vector<Tensor> dst;
  for (const Tensor& t : src)  // destinations at an odd offset too
    dst.push_back(Tensor::zeros({t.numel() + 1}, t.dtype(), Device::cuda(0)).slice_rows(1, t.numel() + 1));
  copy_tensors(src, dst);
  for (size_t i = 0; i < src.size(); ++i) EXPECT_EQ(bytes_of(dst[i]), bytes_of(src[i])) << "pair " << i;
}

}  // namespace
}  // namespace rf
