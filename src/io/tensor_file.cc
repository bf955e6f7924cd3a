// HDF5 C API behind tensor_file.h. HDF5's own error printing is switched off; every failing call is
// turned into a DataError (the file is bad) or BackendError (writing failed) that names the file, the
// object and the innermost message of HDF5's error stack.
#include "src/io/tensor_file.h"

#include <hdf5.h>

#include <filesystem>
#include <set>

#include "src/core/error.h"
#include "src/core/precision.h"

namespace rf {
namespace {

void silence_hdf5() { H5Eset_auto2(H5E_DEFAULT, nullptr, nullptr); }

herr_t collect_error(unsigned, const H5E_error2_t* e, void* data) {
  auto* out = static_cast<std::string*>(data);
  if (e->desc && *e->desc) *out = e->desc;  // walking downward: the last one is the innermost cause
  return 0;
}

// The innermost message on HDF5's error stack, e.g. "truncated file: eof = 100, ...", then clears it.
std::string hdf5_detail() {
  std::string msg;
  H5Ewalk2(H5E_DEFAULT, H5E_WALK_DOWNWARD, collect_error, &msg);
  H5Eclear2(H5E_DEFAULT);
  return msg.empty() ? std::string() : ": " + msg;
}

// Owns one HDF5 id and closes it with the matching H5?close.
class Id {
 public:
  Id(hid_t id, herr_t (*close)(hid_t)) : id_(id), close_(close) {}
  ~Id() {
    if (id_ >= 0) close_(id_);
  }
  Id(const Id&) = delete;
  Id& operator=(const Id&) = delete;
  Id(Id&& o) noexcept : id_(o.id_), close_(o.close_) { o.id_ = -1; }
  hid_t get() const { return id_; }
  bool ok() const { return id_ >= 0; }

 private:
  hid_t id_;
  herr_t (*close_)(hid_t);
};

template <class E>
[[noreturn]] void fail(const std::string& path, const std::string& what) {
  throw E(path + ": " + what + hdf5_detail());
}

template <class E = DataError>
Id check(Id id, const std::string& path, const std::string& what) {
  if (!id.ok()) fail<E>(path, what);
  return id;
}

template <class E = DataError>
void check(herr_t rc, const std::string& path, const std::string& what) {
  if (rc < 0) fail<E>(path, what);
}

std::string quoted(const std::string& name) { return "dataset '" + name + "'"; }

Id open_for_read(const std::string& path) {
  silence_hdf5();
  std::error_code ec;
  if (!std::filesystem::exists(path, ec)) throw DataError(path + ": no such file");
  if (std::filesystem::is_directory(path, ec)) throw DataError(path + ": is a directory, not an HDF5 file");
  htri_t is = H5Fis_hdf5(path.c_str());
  if (is == 0) {
    H5Eclear2(H5E_DEFAULT);
    throw DataError(path + ": not an HDF5 file");
  }
  if (is < 0) fail<DataError>(path, "cannot read HDF5 signature");
  return check(Id(H5Fopen(path.c_str(), H5F_ACC_RDONLY, H5P_DEFAULT), H5Fclose), path,
               "cannot open HDF5 file (truncated or corrupt?)");
}

// True when `name` (possibly "a/b/c") is a link in the file. H5Lexists fails on a missing
// intermediate group, so each prefix is checked in turn.
bool link_exists(hid_t file, const std::string& name) {
  size_t pos = 0;
  while (true) {
    size_t slash = name.find('/', pos);
    std::string prefix = name.substr(0, slash);
    htri_t e = H5Lexists(file, prefix.c_str(), H5P_DEFAULT);
    if (e <= 0) {
      H5Eclear2(H5E_DEFAULT);
      return false;
    }
    if (slash == std::string::npos) return true;
    pos = slash + 1;
  }
}

struct DatasetInfo {
  Shape shape;
  DType dtype;   // what read_tensors returns
  hid_t memtype;  // HDF5 memory type to read it as
};

DatasetInfo inspect(hid_t dset, const std::string& path, const std::string& name) {
  Id space = check(Id(H5Dget_space(dset), H5Sclose), path, quoted(name) + ": cannot get dataspace");
  H5S_class_t sclass = H5Sget_simple_extent_type(space.get());
  if (sclass == H5S_NULL) throw DataError(path + ": " + quoted(name) + " is empty (null dataspace)");
  int nd = H5Sget_simple_extent_ndims(space.get());
  if (nd < 0) fail<DataError>(path, quoted(name) + ": cannot get rank");
  std::vector<hsize_t> dims(static_cast<size_t>(nd));
  if (nd > 0 && H5Sget_simple_extent_dims(space.get(), dims.data(), nullptr) < 0)
    fail<DataError>(path, quoted(name) + ": cannot get shape");
  DatasetInfo info;
  for (hsize_t d : dims) info.shape.push_back(static_cast<int64_t>(d));
  Id type = check(Id(H5Dget_type(dset), H5Tclose), path, quoted(name) + ": cannot get type");
  H5T_class_t tclass = H5Tget_class(type.get());
  size_t size = H5Tget_size(type.get());
  if (tclass == H5T_FLOAT && size == 2) {
    info.dtype = DType::kF16;
    info.memtype = hdf5_type(DType::kF16);
  } else if (tclass == H5T_FLOAT) {
    info.dtype = DType::kF32;
    info.memtype = H5T_NATIVE_FLOAT;
  } else if (tclass == H5T_INTEGER && size == 4 && H5Tget_sign(type.get()) == H5T_SGN_2) {
    info.dtype = DType::kI32;
    info.memtype = H5T_NATIVE_INT32;
  } else if (tclass == H5T_INTEGER) {
    info.dtype = DType::kI64;
    info.memtype = H5T_NATIVE_INT64;
  } else {
    throw DataError(path + ": " + quoted(name) + " has a type that is neither float nor integer");
  }
  return info;
}

void read_into(hid_t dset, hid_t memtype, void* dst, int64_t numel, const std::string& path,
               const std::string& name) {
  if (numel == 0) return;
  check(H5Dread(dset, memtype, H5S_ALL, H5S_ALL, H5P_DEFAULT, dst), path, quoted(name) + ": cannot read");
}

Id open_dataset(hid_t file, const std::string& path, const std::string& name) {
  if (!link_exists(file, name)) throw DataError(path + ": " + quoted(name) + " not found");
  Id obj = check(Id(H5Oopen(file, name.c_str(), H5P_DEFAULT), H5Oclose), path, quoted(name) + ": cannot open");
  if (H5Iget_type(obj.get()) != H5I_DATASET) throw DataError(path + ": '" + name + "' is a group, not a dataset");
  return check(Id(H5Dopen2(file, name.c_str(), H5P_DEFAULT), H5Dclose), path, quoted(name) + ": cannot open");
}

Tensor read_dataset(hid_t file, const std::string& path, const std::string& name) {
  Id dset = open_dataset(file, path, name);
  DatasetInfo info = inspect(dset.get(), path, name);
  Tensor t = Tensor::empty(info.shape, info.dtype);
  read_into(dset.get(), info.memtype, t.raw(), t.numel(), path, name);
  return t;
}

herr_t collect_dataset(hid_t group, const char* name, const H5L_info_t* info, void* data) {
  if (info->type != H5L_TYPE_HARD) return 0;
  hid_t obj = H5Oopen(group, name, H5P_DEFAULT);
  if (obj < 0) return -1;
  bool is_dataset = H5Iget_type(obj) == H5I_DATASET;
  H5Oclose(obj);
  if (is_dataset) static_cast<std::vector<std::string>*>(data)->push_back(name);
  return 0;
}

std::vector<std::string> dataset_names(hid_t file, const std::string& path) {
  std::vector<std::string> names;
  check(H5Lvisit(file, H5_INDEX_NAME, H5_ITER_INC, collect_dataset, &names), path, "cannot list datasets");
  return names;
}

struct Attrs {
  std::map<std::string, std::string> strings;
  std::map<std::string, int64_t> ints;
};

herr_t collect_attr(hid_t loc, const char* name, const H5A_info_t*, void* data) {
  auto* out = static_cast<Attrs*>(data);
  hid_t attr = H5Aopen(loc, name, H5P_DEFAULT);
  if (attr < 0) return -1;
  Id a(attr, H5Aclose);
  Id type(H5Aget_type(attr), H5Tclose);
  Id space(H5Aget_space(attr), H5Sclose);
  if (!type.ok() || !space.ok()) return -1;
  if (H5Sget_simple_extent_npoints(space.get()) != 1) return 0;  // arrays are not ours
  H5T_class_t cls = H5Tget_class(type.get());
  if (cls == H5T_STRING) {
    if (H5Tis_variable_str(type.get()) > 0) {
      Id mem(H5Tcopy(H5T_C_S1), H5Tclose);
      H5Tset_size(mem.get(), H5T_VARIABLE);
      H5Tset_cset(mem.get(), H5Tget_cset(type.get()));
      char* s = nullptr;
      if (H5Aread(attr, mem.get(), &s) < 0) return -1;
      out->strings[name] = s ? s : "";
      H5free_memory(s);
    } else {
      size_t n = H5Tget_size(type.get());
      std::string s(n, '\0');
      Id mem(H5Tcopy(type.get()), H5Tclose);
      if (H5Aread(attr, mem.get(), s.data()) < 0) return -1;
      s.resize(s.find('\0') == std::string::npos ? n : s.find('\0'));
      out->strings[name] = s;
    }
  } else if (cls == H5T_INTEGER) {
    int64_t v = 0;
    if (H5Aread(attr, H5T_NATIVE_INT64, &v) < 0) return -1;
    out->ints[name] = v;
  }
  return 0;
}

Attrs read_attrs(hid_t file, const std::string& path) {
  Attrs attrs;
  check(H5Aiterate2(file, H5_INDEX_NAME, H5_ITER_INC, nullptr, collect_attr, &attrs), path,
        "cannot read file attributes");
  return attrs;
}

void write_scalar_attr(hid_t file, const std::string& path, const std::string& name, hid_t type, const void* buf) {
  Id space = check<BackendError>(Id(H5Screate(H5S_SCALAR), H5Sclose), path, "H5Screate");
  Id attr = check<BackendError>(Id(H5Acreate2(file, name.c_str(), type, space.get(), H5P_DEFAULT, H5P_DEFAULT), H5Aclose),
                                path, "cannot create attribute '" + name + "'");
  check<BackendError>(H5Awrite(attr.get(), type, buf), path, "cannot write attribute '" + name + "'");
}

void check_name(const std::string& path, const std::string& name) {
  if (name.empty() || name.front() == '/' || name.back() == '/' || name.find("//") != std::string::npos ||
      name == "." || name.find("/./") != std::string::npos)
    throw DataError(path + ": invalid dataset name '" + name + "'");
}

}  // namespace

void write_tensors(const std::string& path, const NamedTensors& tensors,
                   const std::map<std::string, std::string>& string_attrs,
                   const std::map<std::string, int64_t>& int_attrs) {
  FileAttrs attrs;
  attrs.strings = string_attrs;
  attrs.ints = int_attrs;
  write_tensors_with_attrs(path, tensors, attrs);
}

void write_tensors_with_attrs(const std::string& path, const NamedTensors& tensors, const FileAttrs& attrs) {
  const auto& string_attrs = attrs.strings;
  const auto& int_attrs = attrs.ints;
  silence_hdf5();
  std::set<std::string> seen;
  for (const auto& [name, t] : tensors) {
    check_name(path, name);
    if (!seen.insert(name).second) throw DataError(path + ": dataset '" + name + "' given twice");
    RF_CHECK(t.defined(), path, ": tensor '", name, "' is undefined");
    if (t.dtype() == DType::kBF16)
      throw DataError(path + ": dataset '" + name + "': bf16 has no type h5py can read; convert to fp32 first");
  }
  const std::string tmp = path + ".tmp";
  {
    Id file = check<BackendError>(Id(H5Fcreate(tmp.c_str(), H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT), H5Fclose), tmp,
                                  "cannot create HDF5 file");
    Id lcpl = check<BackendError>(Id(H5Pcreate(H5P_LINK_CREATE), H5Pclose), tmp, "H5Pcreate");
    check<BackendError>(H5Pset_create_intermediate_group(lcpl.get(), 1), tmp, "H5Pset_create_intermediate_group");
    for (const auto& [name, t0] : tensors) {
      const Tensor t = t0.on(Device::cpu());
      std::vector<hsize_t> dims(t.shape().begin(), t.shape().end());
      Id space = check<BackendError>(
          Id(dims.empty() ? H5Screate(H5S_SCALAR) : H5Screate_simple(static_cast<int>(dims.size()), dims.data(), nullptr),
             H5Sclose),
          tmp, quoted(name) + ": cannot create dataspace");
      hid_t type = hdf5_type(t.dtype());  // little-endian file types, the same layout as x86/ARM memory
      Id dset = check<BackendError>(
          Id(H5Dcreate2(file.get(), name.c_str(), type, space.get(), lcpl.get(), H5P_DEFAULT, H5P_DEFAULT), H5Dclose),
          tmp, quoted(name) + ": cannot create");
      if (t.numel() > 0)
        check<BackendError>(H5Dwrite(dset.get(), type, H5S_ALL, H5S_ALL, H5P_DEFAULT, t.raw()), tmp,
                            quoted(name) + ": cannot write");
    }
    Id str_type = check<BackendError>(Id(H5Tcopy(H5T_C_S1), H5Tclose), tmp, "H5Tcopy");
    check<BackendError>(H5Tset_size(str_type.get(), H5T_VARIABLE), tmp, "H5Tset_size");
    check<BackendError>(H5Tset_cset(str_type.get(), H5T_CSET_UTF8), tmp, "H5Tset_cset");
    for (const auto& [k, v] : string_attrs) {
      const char* s = v.c_str();
      write_scalar_attr(file.get(), tmp, k, str_type.get(), &s);
    }
    for (const auto& [k, v] : int_attrs) write_scalar_attr(file.get(), tmp, k, H5T_STD_I64LE, &v);
    for (const auto& [k, v] : attrs.floats) write_scalar_attr(file.get(), tmp, k, H5T_IEEE_F64LE, &v);
    for (const auto& [k, v] : attrs.int_lists) {
      hsize_t n = v.size();
      Id space = check<BackendError>(Id(H5Screate_simple(1, &n, nullptr), H5Sclose), tmp, "H5Screate_simple");
      Id attr = check<BackendError>(
          Id(H5Acreate2(file.get(), k.c_str(), H5T_STD_I64LE, space.get(), H5P_DEFAULT, H5P_DEFAULT), H5Aclose), tmp,
          "cannot create attribute '" + k + "'");
      if (n > 0)
        check<BackendError>(H5Awrite(attr.get(), H5T_NATIVE_INT64, v.data()), tmp, "cannot write attribute '" + k + "'");
    }
    check<BackendError>(H5Fflush(file.get(), H5F_SCOPE_GLOBAL), tmp, "cannot flush");
  }
  std::error_code ec;
  std::filesystem::rename(tmp, path, ec);
  if (ec) throw BackendError(path + ": cannot rename " + tmp + " into place: " + ec.message());
}

std::map<std::string, Tensor> read_tensors(const std::string& path) {
  Id file = open_for_read(path);
  std::map<std::string, Tensor> out;
  for (const std::string& name : dataset_names(file.get(), path)) out[name] = read_dataset(file.get(), path, name);
  return out;
}

Tensor read_tensor(const std::string& path, const std::string& name) {
  Id file = open_for_read(path);
  return read_dataset(file.get(), path, name);
}

std::map<std::string, std::string> read_string_attrs(const std::string& path) {
  Id file = open_for_read(path);
  return read_attrs(file.get(), path).strings;
}

std::map<std::string, int64_t> read_int_attrs(const std::string& path) {
  Id file = open_for_read(path);
  return read_attrs(file.get(), path).ints;
}

void save_parameters(const std::string& path, const ParameterList& params) {
  NamedTensors tensors;
  for (const Parameter* p : params) {
    RF_CHECK(p->value.dtype() == DType::kF32, "save_parameters: '", p->name, "' is ", dtype_name(p->value.dtype()),
             ", master weights are fp32");
    tensors.emplace_back(p->name, p->value);
  }
  write_tensors(path, tensors, {{"format", kParamsFormat}}, {{"version", kParamsVersion}});
}

void load_parameters(const std::string& path, const ParameterList& params) {
  Id file = open_for_read(path);
  Attrs attrs = read_attrs(file.get(), path);
  auto fmt = attrs.strings.find("format");
  if (fmt != attrs.strings.end() && fmt->second != kParamsFormat)
    throw DataError(path + ": format is '" + fmt->second + "', expected '" + kParamsFormat + "'");
  auto ver = attrs.ints.find("version");
  if (fmt != attrs.strings.end() && ver != attrs.ints.end() && ver->second > kParamsVersion)
    throw DataError(path + ": version " + std::to_string(ver->second) + " is newer than this build reads (" +
                    std::to_string(kParamsVersion) + ")");
  // Check every parameter before writing any, so a bad file leaves the model as it was.
  std::vector<Id> dsets;
  for (const Parameter* p : params) {
    RF_CHECK(p->value.dtype() == DType::kF32, "load_parameters: '", p->name, "' is not fp32");
    Id d = open_dataset(file.get(), path, p->name);
    DatasetInfo info = inspect(d.get(), path, p->name);
    if (info.dtype != DType::kF32 && info.dtype != DType::kF16)
      throw DataError(path + ": " + quoted(p->name) + ": expected a float dataset, got " + dtype_name(info.dtype));
    if (info.shape != p->value.shape())
      throw DataError(path + ": " + quoted(p->name) + ": expected shape " + shape_str(p->value.shape()) + ", got " +
                      shape_str(info.shape));
    dsets.push_back(std::move(d));
  }
  for (size_t i = 0; i < params.size(); ++i) {
    Tensor& v = params[i]->value;
    if (v.device().is_cpu()) {
      read_into(dsets[i].get(), H5T_NATIVE_FLOAT, v.raw(), v.numel(), path, params[i]->name);
    } else {
      Tensor host = Tensor::empty(v.shape(), DType::kF32);
      read_into(dsets[i].get(), H5T_NATIVE_FLOAT, host.raw(), host.numel(), path, params[i]->name);
      v.copy_from(host);
    }
  }
}

}  // namespace rf
