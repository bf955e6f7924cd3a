// Tensor: a typed, shaped, contiguous view into shared storage on the host (64-byte aligned) or on a
// CUDA device (from the caching allocator). No autograd: layers own their forward and backward.
#pragma once

#include <cstdint>
#include <initializer_list>
#include <memory>
#include <string>
#include <vector>

#include "src/core/dtype.h"
#include "src/core/error.h"

namespace rf {

struct Device {
  enum class Kind : uint8_t { kCPU, kCUDA };
  Kind kind = Kind::kCPU;
  int index = 0;

  static Device cpu() { return {}; }
  static Device cuda(int i = 0) { return {Kind::kCUDA, i}; }
  bool is_cpu() const { return kind == Kind::kCPU; }
  bool is_cuda() const { return kind == Kind::kCUDA; }
  bool operator==(const Device&) const = default;
  std::string str() const;  // "cpu", "cuda:0"
};

inline constexpr size_t kHostAlignment = 64;

// Raw bytes on one device. Host storage is 64-byte aligned (AVX-512 loads, cache lines); device
// storage comes from the caching allocator and goes back to it, not to cudaFree.
class Storage {
 public:
  Storage(size_t bytes, Device device);
  ~Storage();
  Storage(const Storage&) = delete;
  Storage& operator=(const Storage&) = delete;

  void* data() const { return data_; }
  size_t bytes() const { return bytes_; }
  Device device() const { return device_; }

 private:
  void* data_ = nullptr;
  size_t bytes_ = 0;
  Device device_;
};

using Shape = std::vector<int64_t>;
std::string shape_str(const Shape& s);  // "[2, 3]"
int64_t shape_numel(const Shape& s);

class Tensor {
 public:
  Tensor() = default;

  // Uninitialised memory: fill or overwrite it before reading.
  static Tensor empty(const Shape& shape, DType dtype, Device device = Device::cpu());
  static Tensor zeros(const Shape& shape, DType dtype, Device device = Device::cpu());
  // Host tensor holding a copy of `values`.
  template <class T>
  static Tensor from_vector(const std::vector<T>& values, const Shape& shape);

  bool defined() const { return storage_ != nullptr; }
  DType dtype() const { return dtype_; }
  Device device() const { return device_; }
  const Shape& shape() const { return shape_; }
  int64_t dim() const { return static_cast<int64_t>(shape_.size()); }
  int64_t size(int64_t i) const;  // negative i counts from the end
  int64_t numel() const { return numel_; }
  size_t nbytes() const { return static_cast<size_t>(numel_) * dtype_size(dtype_); }

  void* raw() const;
  // Typed pointer; throws when T does not match the tensor's dtype.
  template <class T>
  T* data() const {
    RF_CHECK(dtype_v<T> == dtype_, "tensor holds ", dtype_name(dtype_), ", asked for ", dtype_name(dtype_v<T>));
    return static_cast<T*>(raw());
  }

  // A view with the same storage and another shape of the same element count.
  Tensor view(const Shape& shape) const;
  // Rows [begin, end) along dimension 0, sharing storage.
  Tensor slice_rows(int64_t begin, int64_t end) const;

  // Deep copies.
  Tensor clone() const;
  Tensor to(Device device) const;
  // This tensor when it already lives on `device` (shared, no copy), else to(device).
  Tensor on(Device device) const { return device_ == device ? *this : to(device); }
  void copy_from(const Tensor& src);  // same dtype and element count; any device pair
  void fill_zero();

  template <class T>
  std::vector<T> to_vector() const;  // host copy of the elements

 private:
  std::shared_ptr<Storage> storage_;
  size_t offset_ = 0;  // bytes from the start of storage
  Shape shape_;
  int64_t numel_ = 0;
  DType dtype_ = DType::kF32;
  Device device_;
};

// Throws ShapeError naming `what` when the tensor's shape differs from `expected`.
void check_shape(const Tensor& t, const Shape& expected, const char* what);
void check_dtype(const Tensor& t, DType expected, const char* what);

// Copies between host and device memory; defined in the CUDA translation unit when CUDA is built,
// throws otherwise. `bytes` at `dst` and `src` on the given devices. Queued on the device's compute
// stream, in order with the kernels; when it returns, a copy to the host is complete and the source of a
// copy from the host may be reused.
void copy_bytes(void* dst, Device dst_dev, const void* src, Device src_dev, size_t bytes);
// The same without the wait for a page-locked host source (the loader's pinned batches): that source must
// stay unchanged until the compute stream has run the copy (a later synchronisation, e.g. a loss read).
void copy_bytes_async(void* dst, Device dst_dev, const void* src, Device src_dev, size_t bytes);

template <class T>
Tensor Tensor::from_vector(const std::vector<T>& values, const Shape& shape) {
  Tensor t = empty(shape, dtype_v<T>);
  RF_CHECK(static_cast<int64_t>(values.size()) == t.numel(), "from_vector: ", values.size(),
           " values for shape ", shape_str(shape));
  std::copy(values.begin(), values.end(), t.data<T>());
  return t;
}

template <class T>
std::vector<T> Tensor::to_vector() const {
  RF_CHECK(dtype_v<T> == dtype_, "to_vector: tensor holds ", dtype_name(dtype_));
  std::vector<T> out(static_cast<size_t>(numel_));
  copy_bytes(out.data(), Device::cpu(), raw(), device_, nbytes());
  return out;
}

}  // namespace rf
