// Tensor and Storage: host allocation, views and copies. Device memory goes through allocator.h.
#include "src/core/tensor.h"

#include <cstdlib>
#include <cstring>

#include "src/core/allocator.h"

namespace rf {

std::string Device::str() const {
  return is_cpu() ? std::string("cpu") : "cuda:" + std::to_string(index);
}

Storage::Storage(size_t bytes, Device device) : bytes_(bytes), device_(device) {
  if (device.is_cpu()) {
    size_t rounded = (bytes + kHostAlignment - 1) / kHostAlignment * kHostAlignment;
    data_ = std::aligned_alloc(kHostAlignment, rounded == 0 ? kHostAlignment : rounded);
    if (!data_) throw Error("out of host memory allocating " + std::to_string(bytes) + " bytes");
  } else {
    data_ = device_allocate(bytes, device.index);
  }
}

Storage::~Storage() {
  if (device_.is_cpu()) std::free(data_);
  else device_free(data_, device_.index);
}

std::string shape_str(const Shape& s) {
  std::string out = "[";
  for (size_t i = 0; i < s.size(); ++i) out += (i ? ", " : "") + std::to_string(s[i]);
  return out + "]";
}

int64_t shape_numel(const Shape& s) {
  int64_t n = 1;
  for (int64_t d : s) {
    RF_CHECK(d >= 0, "negative dimension in shape ", shape_str(s));
    n *= d;
  }
  return n;
}

Tensor Tensor::empty(const Shape& shape, DType dtype, Device device) {
  Tensor t;
  t.shape_ = shape;
  t.numel_ = shape_numel(shape);
  t.dtype_ = dtype;
  t.device_ = device;
  t.storage_ = std::make_shared<Storage>(t.nbytes(), device);
  return t;
}

Tensor Tensor::zeros(const Shape& shape, DType dtype, Device device) {
  Tensor t = empty(shape, dtype, device);
  t.fill_zero();
  return t;
}

int64_t Tensor::size(int64_t i) const {
  int64_t n = dim();
  if (i < 0) i += n;
  RF_CHECK(i >= 0 && i < n, "dimension ", i, " out of range for shape ", shape_str(shape_));
  return shape_[static_cast<size_t>(i)];
}

void* Tensor::raw() const {
  RF_CHECK(storage_ != nullptr, "use of an undefined tensor");
  return static_cast<char*>(storage_->data()) + offset_;
}

Tensor Tensor::view(const Shape& shape) const {
  RF_CHECK(shape_numel(shape) == numel_, "view: cannot view ", shape_str(shape_), " as ", shape_str(shape));
  Tensor t = *this;
  t.shape_ = shape;
  return t;
}

Tensor Tensor::slice_rows(int64_t begin, int64_t end) const {
  RF_CHECK(dim() >= 1 && 0 <= begin && begin <= end && end <= shape_[0], "slice_rows [", begin, ", ", end,
           ") of ", shape_str(shape_));
  Tensor t = *this;
  int64_t row = shape_[0] == 0 ? 0 : numel_ / shape_[0];
  t.offset_ += static_cast<size_t>(begin * row) * dtype_size(dtype_);
  t.shape_[0] = end - begin;
  t.numel_ = (end - begin) * row;
  return t;
}

Tensor Tensor::clone() const { return to(device_); }

Tensor Tensor::to(Device device) const {
  Tensor t = empty(shape_, dtype_, device);
  t.copy_from(*this);
  return t;
}

void Tensor::copy_from(const Tensor& src) {
  RF_CHECK(src.dtype_ == dtype_ && src.numel_ == numel_, "copy_from: ", dtype_name(src.dtype_),
           shape_str(src.shape_), " into ", dtype_name(dtype_), shape_str(shape_));
  copy_bytes(raw(), device_, src.raw(), src.device_, nbytes());
}

void Tensor::fill_zero() {
  if (device_.is_cpu()) std::memset(raw(), 0, nbytes());
  else device_memset_zero(raw(), nbytes(), device_.index);
}

void check_shape(const Tensor& t, const Shape& expected, const char* what) {
  if (t.shape() != expected)
    throw ShapeError(std::string(what) + ": expected shape " + shape_str(expected) + ", got " +
                     shape_str(t.shape()));
}

void check_dtype(const Tensor& t, DType expected, const char* what) {
  if (t.dtype() != expected)
    throw ShapeError(std::string(what) + ": expected dtype " + dtype_name(expected) + ", got " +
                     dtype_name(t.dtype()));
}

}  // namespace rf
