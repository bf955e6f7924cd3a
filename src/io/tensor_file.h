// HDF5 files of named tensors (initial weights, parameters, optimizer state): one dataset per tensor,
// named by its path from the root group ("bottom_mlp.0.weight", "exp_avg/top_mlp.0.weight"), plus
// root attributes. h5py reads them as numpy arrays. All errors name the file and the object.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <utility>
#include <vector>

#include "src/core/tensor.h"
#include "src/model/parameter.h"

namespace rf {

inline constexpr const char* kParamsFormat = "recforge-params";  // root attribute `format`
inline constexpr int64_t kParamsVersion = 1;                     // root attribute `version`

using NamedTensors = std::vector<std::pair<std::string, Tensor>>;

// Writes `tensors` (fp32, fp16, int32 or int64, host or device) to `path`, replacing it. A '/' in a
// name creates intermediate groups. String attributes are variable-length UTF-8 (h5py: str), integer
// attributes int64 scalars. The file is written to "<path>.tmp" and renamed, so a reader never sees a
// partial file. Throws DataError (bad name, duplicate) or BackendError (HDF5/filesystem failure).
void write_tensors(const std::string& path, const NamedTensors& tensors,
                   const std::map<std::string, std::string>& string_attrs = {},
                   const std::map<std::string, int64_t>& int_attrs = {});

// Root attributes of every kind write_tensors can store. h5py reads strings as str, ints as numpy
// int64 scalars, int_lists as 1-D int64 arrays and floats as numpy float64 scalars.
struct FileAttrs {
  std::map<std::string, std::string> strings;
  std::map<std::string, int64_t> ints;
  std::map<std::string, std::vector<int64_t>> int_lists;
  std::map<std::string, double> floats;
};
// The same file as write_tensors, with any of the attribute kinds (files the PyTorch scripts read need float
// hyper-parameters and int lists such as table_sizes).
void write_tensors_with_attrs(const std::string& path, const NamedTensors& tensors, const FileAttrs& attrs);

// Every dataset in the file, by path without the leading '/'. Float datasets come back as fp32
// (float64 datasets, as numpy writes by default, are converted), fp16 stays fp16, integers as int32
// or int64 (other integer widths are converted to int64). Host tensors.
std::map<std::string, Tensor> read_tensors(const std::string& path);
// One dataset; DataError "<path>: dataset '<name>' not found" when it is absent.
Tensor read_tensor(const std::string& path, const std::string& name);
// Root-group attributes: strings (fixed or variable length) and integer scalars; others are skipped.
std::map<std::string, std::string> read_string_attrs(const std::string& path);
std::map<std::string, int64_t> read_int_attrs(const std::string& path);

// Parameter files: one fp32 dataset per parameter value, named exactly by Parameter::name, with root
// attributes format = "recforge-params" and version = 1.
void save_parameters(const std::string& path, const ParameterList& params);
// Loads every parameter's value from `path`, which must hold a float dataset of the same shape for
// each (extra datasets are ignored; a file without the format attribute, e.g. written by h5py from a
// PyTorch state_dict, is accepted; one with another `format` is refused). Errors read
//   init.h5: dataset 'bottom_mlp.0.weight': expected shape [512, 13], got [256, 13]
//   init.h5: dataset 'bottom_mlp.0.weight' not found
// Nothing is modified unless every parameter can be loaded.
void load_parameters(const std::string& path, const ParameterList& params);

}  // namespace rf
