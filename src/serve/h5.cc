// HDF5 C API behind h5.h. HDF5's own error printing is off; failures become DataError (reading a bad
// file) or BackendError (writing failed) naming the file, the object and HDF5's innermost message.
#include "src/serve/h5.h"

#include <algorithm>
#include <filesystem>

#include "src/core/error.h"
#include "src/core/precision.h"

namespace rf::serve {
namespace {

herr_t collect_error(unsigned, const H5E_error2_t* e, void* data) {
  auto* out = static_cast<std::string*>(data);
  if (e->desc && *e->desc) *out = e->desc;
  return 0;
}

std::string hdf5_detail() {
  std::string msg;
  H5Ewalk2(H5E_DEFAULT, H5E_WALK_DOWNWARD, collect_error, &msg);
  H5Eclear2(H5E_DEFAULT);
  return msg.empty() ? std::string() : " (" + msg + ")";
}

std::string obj_name(const std::string& obj) { return obj == "/" ? "root group" : "'" + obj + "'"; }

H5Id vlen_string_type() {
  H5Id t(H5Tcopy(H5T_C_S1), H5Tclose);
  H5Tset_size(t.get(), H5T_VARIABLE);
  H5Tset_cset(t.get(), H5T_CSET_UTF8);
  return t;
}

}  // namespace

// ---- writer ----

H5Writer::H5Writer(std::string path) : path_(std::move(path)), tmp_(path_ + ".tmp") {
  H5Eset_auto2(H5E_DEFAULT, nullptr, nullptr);
  std::filesystem::path dir = std::filesystem::path(path_).parent_path();
  if (!dir.empty()) std::filesystem::create_directories(dir);
  file_ = H5Id(H5Fcreate(tmp_.c_str(), H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT), H5Fclose);
  if (!file_.ok()) throw BackendError(tmp_ + ": cannot create HDF5 file" + hdf5_detail());
}

H5Writer::~H5Writer() {
  if (!committed_) {
    file_.reset();
    std::error_code ec;
    std::filesystem::remove(tmp_, ec);
  }
}

void H5Writer::group(const std::string& name) {
  H5Id g(H5Gcreate2(file_.get(), name.c_str(), H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT), H5Gclose);
  if (!g.ok()) throw BackendError(tmp_ + ": cannot create group '" + name + "'" + hdf5_detail());
}

namespace {
void write_dataset(hid_t file, const std::string& tmp, const std::string& name, hid_t type, const void* data,
                   const Shape& shape) {
  std::vector<hsize_t> dims(shape.begin(), shape.end());
  H5Id space(dims.empty() ? H5Screate(H5S_SCALAR) : H5Screate_simple(static_cast<int>(dims.size()), dims.data(), nullptr),
             H5Sclose);
  H5Id d(H5Dcreate2(file, name.c_str(), type, space.get(), H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT), H5Dclose);
  if (!space.ok() || !d.ok()) throw BackendError(tmp + ": cannot create dataset '" + name + "'" + hdf5_detail());
  if (shape_numel(shape) > 0 && H5Dwrite(d.get(), type, H5S_ALL, H5S_ALL, H5P_DEFAULT, data) < 0)
    throw BackendError(tmp + ": cannot write dataset '" + name + "'" + hdf5_detail());
}
}  // namespace

void H5Writer::dataset(const std::string& name, const Tensor& t0) {
  const Tensor t = t0.on(Device::cpu());
  RF_CHECK(t.dtype() == DType::kF32 || t.dtype() == DType::kF16 || t.dtype() == DType::kI64, "export dataset '", name,
           "': unsupported dtype ", dtype_name(t.dtype()));
  write_dataset(file_.get(), tmp_, name, hdf5_type(t.dtype()), t.raw(), t.shape());
}

void H5Writer::dataset_u8(const std::string& name, const std::vector<uint8_t>& bytes, const Shape& shape) {
  RF_CHECK(static_cast<int64_t>(bytes.size()) == shape_numel(shape), "dataset_u8: size mismatch");
  write_dataset(file_.get(), tmp_, name, H5T_STD_U8LE, bytes.data(), shape);
}

namespace {
void write_attr(hid_t file, const std::string& tmp, const std::string& obj, const std::string& key, hid_t type,
                const std::vector<hsize_t>& dims, const void* data, hid_t memtype) {
  H5Id space(dims.empty() ? H5Screate(H5S_SCALAR) : H5Screate_simple(1, dims.data(), nullptr), H5Sclose);
  H5Id a(H5Acreate_by_name(file, obj.c_str(), key.c_str(), type, space.get(), H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT),
         H5Aclose);
  if (!space.ok() || !a.ok() || H5Awrite(a.get(), memtype, data) < 0)
    throw BackendError(tmp + ": cannot write attribute '" + key + "' of " + obj_name(obj) + hdf5_detail());
}
}  // namespace

void H5Writer::attr(const std::string& obj, const std::string& key, const std::string& value) {
  H5Id t = vlen_string_type();
  const char* s = value.c_str();
  write_attr(file_.get(), tmp_, obj, key, t.get(), {}, &s, t.get());
}
void H5Writer::attr(const std::string& obj, const std::string& key, int64_t value) {
  write_attr(file_.get(), tmp_, obj, key, H5T_STD_I64LE, {}, &value, H5T_NATIVE_INT64);
}
void H5Writer::attr(const std::string& obj, const std::string& key, double value) {
  write_attr(file_.get(), tmp_, obj, key, H5T_IEEE_F64LE, {}, &value, H5T_NATIVE_DOUBLE);
}
void H5Writer::attr(const std::string& obj, const std::string& key, const std::vector<int64_t>& values) {
  // A zero-length attribute is legal HDF5 but h5py reads it oddly; an empty list is stored as [].
  std::vector<int64_t> v = values;
  write_attr(file_.get(), tmp_, obj, key, H5T_STD_I64LE, {static_cast<hsize_t>(v.size())},
             v.empty() ? nullptr : v.data(), H5T_NATIVE_INT64);
}
void H5Writer::attr(const std::string& obj, const std::string& key, const std::vector<std::string>& values) {
  H5Id t = vlen_string_type();
  std::vector<const char*> ptrs;
  for (const std::string& s : values) ptrs.push_back(s.c_str());
  write_attr(file_.get(), tmp_, obj, key, t.get(), {static_cast<hsize_t>(ptrs.size())}, ptrs.data(), t.get());
}

void H5Writer::commit() {
  if (H5Fflush(file_.get(), H5F_SCOPE_GLOBAL) < 0) throw BackendError(tmp_ + ": cannot flush" + hdf5_detail());
  file_.reset();
  std::error_code ec;
  std::filesystem::rename(tmp_, path_, ec);
  if (ec) throw BackendError(path_ + ": cannot rename " + tmp_ + " into place: " + ec.message());
  committed_ = true;
}

// ---- reader ----

H5Reader::H5Reader(std::string path) : path_(std::move(path)) {
  H5Eset_auto2(H5E_DEFAULT, nullptr, nullptr);
  std::error_code ec;
  if (!std::filesystem::exists(path_, ec)) throw DataError(path_ + ": no such file");
  if (std::filesystem::is_directory(path_, ec)) throw DataError(path_ + ": is a directory, not an HDF5 file");
  htri_t is = H5Fis_hdf5(path_.c_str());
  if (is <= 0) {
    H5Eclear2(H5E_DEFAULT);
    throw DataError(path_ + ": not an HDF5 file");
  }
  file_ = H5Id(H5Fopen(path_.c_str(), H5F_ACC_RDONLY, H5P_DEFAULT), H5Fclose);
  if (!file_.ok()) fail("cannot open HDF5 file (truncated or corrupt?)");
}

void H5Reader::fail(const std::string& what) const { throw DataError(path_ + ": " + what + hdf5_detail()); }

bool H5Reader::exists(const std::string& name) const {
  if (name == "/") return true;
  size_t pos = name[0] == '/' ? 1 : 0;
  while (true) {
    size_t slash = name.find('/', pos);
    std::string prefix = name.substr(0, slash);
    htri_t e = H5Lexists(file_.get(), prefix.c_str(), H5P_DEFAULT);
    if (e <= 0) {
      H5Eclear2(H5E_DEFAULT);
      return false;
    }
    if (slash == std::string::npos) return true;
    pos = slash + 1;
  }
}

bool H5Reader::has_attr(const std::string& obj, const std::string& key) const {
  if (!exists(obj)) return false;
  htri_t e = H5Aexists_by_name(file_.get(), obj.c_str(), key.c_str(), H5P_DEFAULT);
  H5Eclear2(H5E_DEFAULT);
  return e > 0;
}

H5Id H5Reader::open_attr(const std::string& obj, const std::string& key) const {
  if (!has_attr(obj, key)) throw DataError(path_ + ": attribute '" + key + "' of " + obj_name(obj) + " not found");
  H5Id a(H5Aopen_by_name(file_.get(), obj.c_str(), key.c_str(), H5P_DEFAULT, H5P_DEFAULT), H5Aclose);
  if (!a.ok()) fail("cannot open attribute '" + key + "' of " + obj_name(obj));
  return a;
}

namespace {
struct AttrShape {
  H5T_class_t cls;
  hssize_t n;  // elements (1 for a scalar)
  bool scalar;
};
AttrShape attr_shape(hid_t a) {
  H5Id type(H5Aget_type(a), H5Tclose);
  H5Id space(H5Aget_space(a), H5Sclose);
  AttrShape s;
  s.cls = H5Tget_class(type.get());
  s.n = H5Sget_simple_extent_npoints(space.get());
  s.scalar = H5Sget_simple_extent_type(space.get()) == H5S_SCALAR;
  return s;
}
}  // namespace

std::vector<std::string> H5Reader::attr_strings(const std::string& obj, const std::string& key) const {
  H5Id a = open_attr(obj, key);
  AttrShape s = attr_shape(a.get());
  auto bad = [&] { return DataError(path_ + ": attribute '" + key + "' of " + obj_name(obj) + ": expected string(s)"); };
  if (s.cls != H5T_STRING) throw bad();
  H5Id ftype(H5Aget_type(a.get()), H5Tclose);
  std::vector<std::string> out;
  if (H5Tis_variable_str(ftype.get()) > 0) {
    H5Id mt = vlen_string_type();
    std::vector<char*> ptrs(static_cast<size_t>(s.n), nullptr);
    if (H5Aread(a.get(), mt.get(), ptrs.data()) < 0) fail("cannot read attribute '" + key + "'");
    for (char* p : ptrs) {
      out.emplace_back(p ? p : "");
      H5free_memory(p);
    }
  } else {
    size_t size = H5Tget_size(ftype.get());
    std::vector<char> buf(size * static_cast<size_t>(s.n) + 1, '\0');
    if (H5Aread(a.get(), ftype.get(), buf.data()) < 0) fail("cannot read attribute '" + key + "'");
    for (hssize_t i = 0; i < s.n; ++i) {
      const char* b = buf.data() + static_cast<size_t>(i) * size;
      out.emplace_back(b, strnlen(b, size));
    }
  }
  return out;
}

std::string H5Reader::attr_string(const std::string& obj, const std::string& key) const {
  std::vector<std::string> v = attr_strings(obj, key);
  if (v.size() != 1)
    throw DataError(path_ + ": attribute '" + key + "' of " + obj_name(obj) + ": expected one string, got " +
                    std::to_string(v.size()));
  return v[0];
}

std::vector<int64_t> H5Reader::attr_ints(const std::string& obj, const std::string& key) const {
  H5Id a = open_attr(obj, key);
  AttrShape s = attr_shape(a.get());
  if (s.cls != H5T_INTEGER)
    throw DataError(path_ + ": attribute '" + key + "' of " + obj_name(obj) + ": expected integer(s)");
  std::vector<int64_t> v(static_cast<size_t>(s.n));
  if (s.n > 0 && H5Aread(a.get(), H5T_NATIVE_INT64, v.data()) < 0) fail("cannot read attribute '" + key + "'");
  return v;
}

int64_t H5Reader::attr_int(const std::string& obj, const std::string& key) const {
  std::vector<int64_t> v = attr_ints(obj, key);
  if (v.size() != 1)
    throw DataError(path_ + ": attribute '" + key + "' of " + obj_name(obj) + ": expected one integer, got " +
                    std::to_string(v.size()));
  return v[0];
}

double H5Reader::attr_float(const std::string& obj, const std::string& key) const {
  H5Id a = open_attr(obj, key);
  AttrShape s = attr_shape(a.get());
  if ((s.cls != H5T_FLOAT && s.cls != H5T_INTEGER) || s.n != 1)
    throw DataError(path_ + ": attribute '" + key + "' of " + obj_name(obj) + ": expected one number");
  double v = 0;
  if (H5Aread(a.get(), H5T_NATIVE_DOUBLE, &v) < 0) fail("cannot read attribute '" + key + "'");
  return v;
}

H5DatasetInfo H5Reader::info(const std::string& name) const {
  if (!exists(name)) throw DataError(path_ + ": dataset '" + name + "' not found");
  H5Id d(H5Dopen2(file_.get(), name.c_str(), H5P_DEFAULT), H5Dclose);
  if (!d.ok()) fail("'" + name + "' is not a dataset");
  H5Id space(H5Dget_space(d.get()), H5Sclose);
  H5Id type(H5Dget_type(d.get()), H5Tclose);
  int nd = H5Sget_simple_extent_ndims(space.get());
  if (nd < 0) fail("dataset '" + name + "': cannot read its shape");
  std::vector<hsize_t> dims(static_cast<size_t>(nd));
  if (nd > 0) H5Sget_simple_extent_dims(space.get(), dims.data(), nullptr);
  H5DatasetInfo info;
  for (hsize_t x : dims) info.shape.push_back(static_cast<int64_t>(x));
  info.type_class = H5Tget_class(type.get());
  info.type_size = H5Tget_size(type.get());
  if (info.type_class == H5T_INTEGER) info.is_signed = H5Tget_sign(type.get()) != H5T_SGN_NONE;
  return info;
}

Tensor H5Reader::read_f32(const std::string& name) const {
  H5DatasetInfo inf = info(name);
  if (inf.type_class != H5T_FLOAT) throw DataError(path_ + ": dataset '" + name + "': expected a float dataset");
  Tensor t = Tensor::empty(inf.shape, DType::kF32);
  H5Id d(H5Dopen2(file_.get(), name.c_str(), H5P_DEFAULT), H5Dclose);
  // HDF5 converts fp16 and fp64 on disk to the native float (fp16 -> fp32 is exact).
  if (t.numel() > 0 && H5Dread(d.get(), H5T_NATIVE_FLOAT, H5S_ALL, H5S_ALL, H5P_DEFAULT, t.raw()) < 0)
    fail("dataset '" + name + "': cannot read (truncated file?)");
  return t;
}

std::vector<uint8_t> H5Reader::read_u8(const std::string& name) const {
  H5DatasetInfo inf = info(name);
  if (inf.type_class != H5T_INTEGER || inf.type_size != 1 || inf.is_signed)
    throw DataError(path_ + ": dataset '" + name + "': expected a uint8 dataset");
  std::vector<uint8_t> v(static_cast<size_t>(shape_numel(inf.shape)));
  H5Id d(H5Dopen2(file_.get(), name.c_str(), H5P_DEFAULT), H5Dclose);
  if (!v.empty() && H5Dread(d.get(), H5T_NATIVE_UINT8, H5S_ALL, H5S_ALL, H5P_DEFAULT, v.data()) < 0)
    fail("dataset '" + name + "': cannot read (truncated file?)");
  return v;
}

namespace {
herr_t collect_name(hid_t, const char* name, const H5L_info_t*, void* data) {
  static_cast<std::vector<std::string>*>(data)->emplace_back(name);
  return 0;
}
}  // namespace

std::vector<std::string> H5Reader::children(const std::string& group) const {
  if (!exists(group)) throw DataError(path_ + ": group '" + group + "' not found");
  std::vector<std::string> out;
  if (H5Literate_by_name(file_.get(), group.c_str(), H5_INDEX_NAME, H5_ITER_NATIVE, nullptr, collect_name, &out,
                         H5P_DEFAULT) < 0)
    fail("cannot list group '" + group + "'");
  std::sort(out.begin(), out.end());
  return out;
}

}  // namespace rf::serve
