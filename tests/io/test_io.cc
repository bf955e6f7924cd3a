// HDF5 tensor files: round trips of every dtype and shape kind, parameter files and their error
// messages (missing dataset, shape mismatch, non-HDF5 and truncated files), and interchange with h5py.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <unistd.h>

#include "src/core/error.h"
#include "src/io/tensor_file.h"
#include "tests/common/test_support.h"

namespace rf {
namespace {

namespace fs = std::filesystem;

std::string temp_path(const std::string& name) {
  return (test::process_dir("io") / name).string();
}

template <class Fn>
std::string error_of(Fn fn) {
  try {
    fn();
  } catch (const DataError& e) {
    return e.what();
  } catch (const std::exception& e) {
    return std::string("wrong exception type: ") + e.what();
  }
  return "no exception";
}

bool same_bytes(const Tensor& a, const Tensor& b) {
  return a.dtype() == b.dtype() && a.shape() == b.shape() && std::memcmp(a.raw(), b.raw(), a.nbytes()) == 0;
}

bool have_h5py() { return std::system("/usr/bin/python3 -c 'import h5py, numpy' >/dev/null 2>&1") == 0; }

Parameter make_param(const std::string& name, const Shape& shape, float start) {
  Parameter p;
  p.name = name;
  p.value = Tensor::empty(shape, DType::kF32);
  for (int64_t i = 0; i < p.value.numel(); ++i) p.value.data<float>()[i] = start + 0.5f * static_cast<float>(i);
  return p;
}

TEST(TensorFile, RoundTripEveryKind) {
  const std::string path = temp_path("round.h5");
  NamedTensors in;
  in.emplace_back("bottom_mlp.0.weight", Tensor::from_vector<float>({1.5f, -2.0f, 3.25f, 1e-30f, NAN, INFINITY}, {2, 3}));
  in.emplace_back("ids", Tensor::from_vector<int64_t>({1, -2, int64_t(1) << 40}, {3}));
  in.emplace_back("i32", Tensor::from_vector<int32_t>({7, 8}, {2}));
  Tensor h = Tensor::empty({2}, DType::kF16);
  h.data<f16>()[0] = to_f16(1.5f);
  h.data<f16>()[1] = to_f16(-0.25f);
  in.emplace_back("half", h);
  in.emplace_back("scalar", Tensor::from_vector<float>({42.0f}, {}));
  in.emplace_back("empty", Tensor::empty({0, 3}, DType::kF32));
  in.emplace_back("exp_avg/top.0.weight", Tensor::from_vector<float>({1, 2}, {2}));
  write_tensors(path, in, {{"format", "test"}, {"note", "üñí"}}, {{"version", 3}});
  EXPECT_FALSE(fs::exists(path + ".tmp"));

  auto out = read_tensors(path);
  ASSERT_EQ(out.size(), in.size());
  for (const auto& [name, t] : in) {
    ASSERT_TRUE(out.count(name)) << name;
    EXPECT_TRUE(same_bytes(out[name], t)) << name;
  }
  EXPECT_TRUE(same_bytes(read_tensor(path, "exp_avg/top.0.weight"), in.back().second));
  auto s = read_string_attrs(path);
  EXPECT_EQ(s["format"], "test");
  EXPECT_EQ(s["note"], "üñí");
  EXPECT_EQ(read_int_attrs(path)["version"], 3);
}

TEST(TensorFile, BadWritesRefused) {
  const std::string path = temp_path("bad_write.h5");
  Tensor t = Tensor::zeros({2}, DType::kF32);
  EXPECT_NE(error_of([&] { write_tensors(path, {{"a", t}, {"a", t}}); }).find("given twice"), std::string::npos);
  EXPECT_NE(error_of([&] { write_tensors(path, {{"", t}}); }).find("invalid dataset name"), std::string::npos);
  EXPECT_NE(error_of([&] { write_tensors(path, {{"b", Tensor::zeros({2}, DType::kBF16)}}); }).find("bf16"),
            std::string::npos);
  EXPECT_THROW(write_tensors("/nonexistent_dir_rf/x.h5", {{"a", t}}), BackendError);
}

TEST(Parameters, SaveLoadRoundTripWithFormatAttrs) {
  const std::string path = temp_path("params.h5");
  Parameter a = make_param("bottom_mlp.0.weight", {4, 3}, 1.0f), b = make_param("embeddings.0.weight", {5, 2}, -3.0f);
  save_parameters(path, {&a, &b});
  EXPECT_EQ(read_string_attrs(path)["format"], "recforge-params");
  EXPECT_EQ(read_int_attrs(path)["version"], 1);
  Parameter a2 = make_param("bottom_mlp.0.weight", {4, 3}, 0.0f), b2 = make_param("embeddings.0.weight", {5, 2}, 0.0f);
  load_parameters(path, {&a2, &b2});
  EXPECT_TRUE(same_bytes(a.value, a2.value));
  EXPECT_TRUE(same_bytes(b.value, b2.value));
}

TEST(Parameters, ShapeMismatchNamesFileAndDatasetAndChangesNothing) {
  const std::string path = temp_path("init.h5");
  Parameter ok = make_param("top_mlp.0.weight", {2, 2}, 1.0f);
  Parameter small = make_param("bottom_mlp.0.weight", {256, 13}, 1.0f);
  save_parameters(path, {&ok, &small});
  Parameter ok2 = make_param("top_mlp.0.weight", {2, 2}, 9.0f);
  Parameter big = make_param("bottom_mlp.0.weight", {512, 13}, 0.0f);
  Tensor before = ok2.value.clone();
  EXPECT_EQ(error_of([&] { load_parameters(path, {&ok2, &big}); }),
            path + ": dataset 'bottom_mlp.0.weight': expected shape [512, 13], got [256, 13]");
  EXPECT_TRUE(same_bytes(ok2.value, before));
}

TEST(Parameters, MissingDataset) {
  const std::string path = temp_path("missing.h5");
  Parameter a = make_param("a.weight", {2}, 1.0f), b = make_param("b.weight", {2}, 1.0f);
  save_parameters(path, {&a});
  EXPECT_EQ(error_of([&] { load_parameters(path, {&a, &b}); }), path + ": dataset 'b.weight' not found");
  EXPECT_EQ(error_of([&] { read_tensor(path, "x/y"); }), path + ": dataset 'x/y' not found");
}

TEST(Parameters, WrongFormatAttributeRefused) {
  const std::string path = temp_path("other.h5");
  Parameter a = make_param("a.weight", {2}, 1.0f);
  write_tensors(path, {{"a.weight", a.value}}, {{"format", "recforge-export"}});
  EXPECT_NE(error_of([&] { load_parameters(path, {&a}); }).find("format is 'recforge-export'"), std::string::npos);
}

TEST(Files, NotHdf5MissingAndTruncated) {
  const std::string text = temp_path("text.h5");
  std::ofstream(text) << "bottom_mlp.0.weight 1 2 3\n";
  EXPECT_EQ(error_of([&] { read_tensors(text); }), text + ": not an HDF5 file");
  const std::string none = temp_path("does_not_exist.h5");
  EXPECT_EQ(error_of([&] { read_tensors(none); }), none + ": no such file");

  const std::string full = temp_path("full.h5"), cut = temp_path("cut.h5");
  Parameter big = make_param("emb.weight", {1000, 16}, 0.0f);
  save_parameters(full, {&big});
  fs::copy_file(full, cut, fs::copy_options::overwrite_existing);
  fs::resize_file(cut, fs::file_size(full) / 2);
  std::string msg = error_of([&] { load_parameters(cut, {&big}); });
  EXPECT_EQ(msg.rfind(cut + ": ", 0), 0u) << msg;
  EXPECT_EQ(msg.find("wrong exception"), std::string::npos) << msg;
}

TEST(H5py, ReadsOurFilesAndWeReadTheirs) {
  if (!have_h5py()) GTEST_SKIP() << "/usr/bin/python3 with h5py and numpy not available";
  const std::string ours = temp_path("ours.h5");
  Parameter a = make_param("bottom_mlp.0.weight", {3, 2}, 1.0f);
  save_parameters(ours, {&a});
  std::string cmd =
      "/usr/bin/python3 -c \"import h5py, numpy as np, sys\n"
      "f = h5py.File(sys.argv[1], 'r')\n"
      "assert f.attrs['format'] == 'recforge-params', f.attrs['format']\n"
      "assert f.attrs['version'] == 1\n"
      "d = f['bottom_mlp.0.weight']\n"
      "assert d.dtype == np.float32 and d.shape == (3, 2), (d.dtype, d.shape)\n"
      "assert (d[()] == 1.0 + 0.5 * np.arange(6).reshape(3, 2)).all()\n"
      "\" " + ours;
  EXPECT_EQ(std::system(cmd.c_str()), 0);

  // A file as someone converting a PyTorch state_dict would write it: float64, no attributes.
  const std::string theirs = temp_path("theirs.h5");
  cmd = "/usr/bin/python3 -c \"import h5py, numpy as np, sys\n"
        "f = h5py.File(sys.argv[1], 'w')\n"
        "f['bottom_mlp.0.weight'] = np.arange(6, dtype=np.float64).reshape(3, 2) / 4\n"
        "f['counts'] = np.arange(3, dtype=np.int16)\n"
        "f.close()\n"
        "\" " + theirs;
  ASSERT_EQ(std::system(cmd.c_str()), 0);
  Parameter b = make_param("bottom_mlp.0.weight", {3, 2}, 0.0f);
  load_parameters(theirs, {&b});
  for (int i = 0; i < 6; ++i) EXPECT_EQ(b.value.data<float>()[i], static_cast<float>(i) / 4);
  auto all = read_tensors(theirs);
  EXPECT_EQ(all["bottom_mlp.0.weight"].dtype(), DType::kF32);
  EXPECT_EQ(all["counts"].dtype(), DType::kI64);
  EXPECT_EQ(all["counts"].to_vector<int64_t>(), (std::vector<int64_t>{0, 1, 2}));
}

}  // namespace
}  // namespace rf
