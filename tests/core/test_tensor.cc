// Tensor storage, views and copies on the host.
#include <gtest/gtest.h>

#include <cstdint>

#include "src/core/allocator.h"
#include "src/core/tensor.h"

namespace rf {
namespace {

TEST(Tensor, EmptyIsAlignedAndShaped) {
  for (int64_t n : {1, 3, 17, 1000}) {
    Tensor t = Tensor::empty({n, 3}, DType::kF32);
    EXPECT_EQ(reinterpret_cast<uintptr_t>(t.raw()) % kHostAlignment, 0u);
    EXPECT_EQ(t.numel(), n * 3);
    EXPECT_EQ(t.nbytes(), static_cast<size_t>(n * 3 * 4));
    EXPECT_EQ(t.size(-1), 3);
  }
}

TEST(Tensor, ZerosFromVectorAndToVector) {
  Tensor z = Tensor::zeros({4, 2}, DType::kI64);
  for (int64_t v : z.to_vector<int64_t>()) EXPECT_EQ(v, 0);
  Tensor t = Tensor::from_vector<float>({1, 2, 3, 4, 5, 6}, {2, 3});
  EXPECT_EQ(t.to_vector<float>(), (std::vector<float>{1, 2, 3, 4, 5, 6}));
  EXPECT_THROW(t.data<int32_t>(), Error);
  EXPECT_THROW(Tensor::from_vector<float>({1, 2}, {3}), Error);
}

TEST(Tensor, ViewsShareStorage) {
  Tensor t = Tensor::from_vector<float>({0, 1, 2, 3, 4, 5, 6, 7}, {4, 2});
  Tensor rows = t.slice_rows(1, 3);
  EXPECT_EQ(rows.shape(), (Shape{2, 2}));
  EXPECT_EQ(rows.to_vector<float>(), (std::vector<float>{2, 3, 4, 5}));
  rows.data<float>()[0] = 42;
  EXPECT_EQ(t.data<float>()[2], 42);
  Tensor flat = t.view({8});
  EXPECT_EQ(flat.data<float>()[2], 42);
  EXPECT_THROW(t.view({3, 3}), Error);
  EXPECT_THROW(t.slice_rows(2, 5), Error);
}

TEST(Tensor, CloneIsDeep) {
  Tensor t = Tensor::from_vector<int32_t>({1, 2, 3}, {3});
  Tensor c = t.clone();
  c.data<int32_t>()[0] = 9;
  EXPECT_EQ(t.data<int32_t>()[0], 1);
  EXPECT_THROW(c.copy_from(Tensor::zeros({4}, DType::kI32)), Error);
}

TEST(Tensor, ShapeChecksNameTheArgument) {
  Tensor t = Tensor::zeros({2, 3}, DType::kF32);
  try {
    check_shape(t, {3, 2}, "linear weight");
    FAIL() << "no throw";
  } catch (const ShapeError& e) {
    EXPECT_NE(std::string(e.what()).find("linear weight: expected shape [3, 2], got [2, 3]"), std::string::npos);
  }
}

TEST(Tensor, DeviceTensorsNeedAGpu) {
  if (cuda_available()) GTEST_SKIP() << "a GPU is present; the no-GPU error path is not reachable";
  EXPECT_THROW(Tensor::empty({4}, DType::kF32, Device::cuda(0)), Error);
}

}  // namespace
}  // namespace rf
