// A small HDF5 layer for the export file: groups and datasets with attributes of several kinds
// (strings, string lists, ints, int lists, floats) on any object, written to "<path>.tmp" and renamed.
// Reading names the file and the object in every error (DataError: the file is bad).
#pragma once

#include <hdf5.h>

#include <cstdint>
#include <string>
#include <vector>

#include "src/core/tensor.h"

namespace rf::serve {

// Owns one HDF5 id and closes it with the matching H5?close.
class H5Id {
 public:
  H5Id() = default;
  H5Id(hid_t id, herr_t (*close)(hid_t)) : id_(id), close_(close) {}
  ~H5Id() { reset(); }
  H5Id(const H5Id&) = delete;
  H5Id& operator=(const H5Id&) = delete;
  H5Id(H5Id&& o) noexcept : id_(o.id_), close_(o.close_) { o.id_ = -1; }
  H5Id& operator=(H5Id&& o) noexcept {
    if (this != &o) {
      reset();
      id_ = o.id_;
      close_ = o.close_;
      o.id_ = -1;
    }
    return *this;
  }
  hid_t get() const { return id_; }
  bool ok() const { return id_ >= 0; }
  void reset() {
    if (id_ >= 0 && close_) close_(id_);
    id_ = -1;
  }

 private:
  hid_t id_ = -1;
  herr_t (*close_)(hid_t) = nullptr;
};

// Writes one file. `obj` arguments are paths from the root ("/" for the root group itself).
class H5Writer {
 public:
  explicit H5Writer(std::string path);  // creates <path>.tmp
  ~H5Writer();                          // removes the .tmp when commit() was not reached
  void group(const std::string& name);
  // fp32, fp16 and int64 tensors keep their type; `u8` writes raw bytes as uint8.
  void dataset(const std::string& name, const Tensor& t);
  void dataset_u8(const std::string& name, const std::vector<uint8_t>& bytes, const Shape& shape);
  void attr(const std::string& obj, const std::string& key, const std::string& value);
  void attr(const std::string& obj, const std::string& key, const char* value) { attr(obj, key, std::string(value)); }
  void attr(const std::string& obj, const std::string& key, int64_t value);
  void attr(const std::string& obj, const std::string& key, double value);
  void attr(const std::string& obj, const std::string& key, const std::vector<int64_t>& values);
  void attr(const std::string& obj, const std::string& key, const std::vector<std::string>& values);
  void commit();  // flush, close and rename into place

 private:
  std::string path_, tmp_;
  H5Id file_;
  bool committed_ = false;
};

struct H5DatasetInfo {
  Shape shape;
  H5T_class_t type_class = H5T_NO_CLASS;
  size_t type_size = 0;
  bool is_signed = true;
};

class H5Reader {
 public:
  explicit H5Reader(std::string path);  // DataError: missing, not HDF5, truncated or corrupt
  const std::string& path() const { return path_; }
  bool exists(const std::string& name) const;  // any link, "a/b/c" checked prefix by prefix
  bool has_attr(const std::string& obj, const std::string& key) const;
  std::string attr_string(const std::string& obj, const std::string& key) const;
  int64_t attr_int(const std::string& obj, const std::string& key) const;
  double attr_float(const std::string& obj, const std::string& key) const;
  std::vector<int64_t> attr_ints(const std::string& obj, const std::string& key) const;
  std::vector<std::string> attr_strings(const std::string& obj, const std::string& key) const;
  H5DatasetInfo info(const std::string& name) const;
  // Float datasets (fp16 or fp32 or fp64 on disk) as fp32; uint8 as bytes. Sizes checked against info().
  Tensor read_f32(const std::string& name) const;
  std::vector<uint8_t> read_u8(const std::string& name) const;
  std::vector<std::string> children(const std::string& group) const;  // link names, sorted

 private:
  [[noreturn]] void fail(const std::string& what) const;
  H5Id open_attr(const std::string& obj, const std::string& key) const;
  std::string path_;
  H5Id file_;
};

}  // namespace rf::serve
