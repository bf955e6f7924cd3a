// The serve library against the trainer: a model trained here, exported and loaded by the Predictor,
// scores raw rows exactly as the trainer's evaluation forward does; quantisation round trips stay
// within their bound; a bad export or bad rows fail with the file and the object named.
#include <gtest/gtest.h>

#include "src/core/allocator.h"

#include <hdf5.h>

#include <cmath>
#include <filesystem>
#include <fstream>

#include "dataloader/tsv_reader.h"
#include "src/config/config.h"
#include "src/core/error.h"
#include "src/serve/export.h"
#include "src/serve/predictor.h"
#include "src/train/data_source.h"
#include "src/train/trainer.h"
#include "tests/common/test_support.h"

namespace rf::serve {
namespace {

namespace fs = std::filesystem;

fs::path work_dir() { return rf::test::synth_dataset("serve_test", rf::test::small_synth_spec(4000, 1500, 300, 9)); }

Config config(const std::vector<std::string>& extra) {
  std::vector<std::string> o = {"--data.train=" + (work_dir() / "train.tsv").string(),
                                "--data.test=" + (work_dir() / "test.tsv").string(),
                                "--train.out_dir=" + (work_dir() / "run").string(), "--train.threads=2"};
  o.insert(o.end(), extra.begin(), extra.end());
  return Config::load(RF_SERVE_TEST_CONFIG, o);
}

// Trains briefly, exports, and compares the Predictor on the raw test rows with the trainer's own
// evaluation forward over the same rows (loaded by the trainer's reader).
void check_matches_trainer(const std::vector<std::string>& extra, const std::string& name) {
  Config cfg = config(extra);
  Trainer trainer(cfg);
  data::ColumnSchema schema = schema_from(cfg);
  data::TsvReader reader(schema, {(work_dir() / "train.tsv").string()});
  data::Batch b;
  for (int step = 0; step < 10 && reader.next(b, 256); ++step) trainer.train_step(b);

  data::Batch test = data::load_all(schema, {(work_dir() / "test.tsv").string()});
  Tensor logits = Tensor::empty({test.size()}, DType::kF32);
  trainer.model().forward(model_input(test), logits);

  const std::string path = (work_dir() / (name + ".h5")).string();
  write_export(path, trainer.model(), schema, Quantize::kNone);
  Predictor predictor(path);
  std::vector<float> labels;
  std::vector<float> probs = predictor.predict_file((work_dir() / "test.tsv").string(), 333, &labels);
  ASSERT_EQ(static_cast<int64_t>(probs.size()), test.size());
  ASSERT_EQ(labels.size(), probs.size());
  const float* l = logits.data<float>();
  for (size_t i = 0; i < probs.size(); ++i) {
    double want = 1.0 / (1.0 + std::exp(-static_cast<double>(l[i])));
    // Same weights, same kernels, same inputs: the only freedom is the batch split (333 vs all rows),
    // which the row-wise kernels do not see; 1e-6 relative is the bound.
    ASSERT_NEAR(probs[i], want, 1e-6 * std::abs(want)) << name << " row " << i;
    ASSERT_EQ(labels[i], test.labels.data<float>()[i]);
  }
}

TEST(Serve, DlrmPredictorMatchesTrainer) { check_matches_trainer({}, "dlrm"); }

// The same export scored on a GPU gives the CPU predictor's probabilities.
TEST(Serve, GpuPredictorMatchesCpuPredictor) {
  if (!cuda_available()) GTEST_SKIP() << "no CUDA device found (cudaGetDeviceCount reports 0 or fails)";
  for (const auto& [name, extra] : std::vector<std::pair<std::string, std::vector<std::string>>>{
           {"gpu_dlrm", {}}, {"gpu_dcnv2", {"--model.type=dcnv2", "--model.cross_rank=4"}}}) {
    Config cfg = config(extra);
    Trainer trainer(cfg);
    const std::string path = (work_dir() / (name + ".h5")).string();
    write_export(path, trainer.model(), schema_from(cfg), Quantize::kNone);
    Predictor cpu(path), gpu(path, Device::cuda(0));
    std::vector<float> a = cpu.predict_file((work_dir() / "test.tsv").string(), 500);
    std::vector<float> b = gpu.predict_file((work_dir() / "test.tsv").string(), 500);
    ASSERT_EQ(a.size(), b.size());
    for (size_t i = 0; i < a.size(); ++i)
      // fp32 on both, TF32 off; cuBLAS and OpenBLAS sum the GEMMs in different orders (~1e-7 relative
      // per layer), and a probability near 0.5 is insensitive to that: 1e-5 relative bounds it.
      ASSERT_NEAR(b[i], a[i], 1e-5 * std::abs(a[i]) + 1e-7) << name << " row " << i;
  }
}
TEST(Serve, Dcnv2LowRankPredictorMatchesTrainer) {
  check_matches_trainer({"--model.type=dcnv2", "--model.cross_layers=2", "--model.cross_rank=3"}, "dcnv2");
}
TEST(Serve, Dcnv2FullRankPredictorMatchesTrainer) {
  check_matches_trainer({"--model.type=dcnv2", "--model.cross_layers=1", "--model.pooling=mean"}, "dcnv2_full");
}

TEST(Serve, Int8RowwiseWithinHalfAStep) {
  Tensor t = Tensor::empty({3, 5}, DType::kF32);
  float v[15] = {0.1f, -2.0f, 3.5f, 0.0f, 1.25f, 7, 7, 7, 7, 7, -1e-3f, 2e-3f, 5e-4f, -7e-4f, 0};
  std::copy(v, v + 15, t.data<float>());
  RowwiseInt8 q = quantize_rowwise_int8(t);
  Tensor d = dequantize_rowwise_int8(q, 3, 5);
  for (int r = 0; r < 3; ++r) {
    float scale = q.scale.data<float>()[r];
    for (int k = 0; k < 5; ++k) {
      // Half a quantisation step, plus fp32 rounding of q * scale + bias.
      EXPECT_NEAR(d.data<float>()[r * 5 + k], v[r * 5 + k], 0.5f * scale + 1e-6f) << r << "," << k;
    }
  }
  for (int k = 0; k < 5; ++k) EXPECT_EQ(d.data<float>()[5 + k], 7.0f);  // a constant row is exact
  Tensor h = round_trip(t, Quantize::kFp16);
  EXPECT_EQ(h.data<float>()[2], 3.5f);
}

// A copy of a fresh export that `edit` changes through the raw HDF5 API.
std::string edited_export(const std::string& name, void (*edit)(hid_t)) {
  static std::string base = [] {
    Config cfg = config({});
    data::ColumnSchema schema = schema_from(cfg);
    auto model = make_model(model_config_from(cfg, schema.num_dense(), table_sizes_from(schema)));
    std::string p = (work_dir() / "base.h5").string();
    write_export(p, *model, schema, Quantize::kInt8);
    return p;
  }();
  std::string p = (work_dir() / name).string();
  fs::copy_file(base, p, fs::copy_options::overwrite_existing);
  if (edit) {
    hid_t f = H5Fopen(p.c_str(), H5F_ACC_RDWR, H5P_DEFAULT);
    edit(f);
    H5Fclose(f);
  }
  return p;
}

void expect_data_error(const std::string& path, const std::string& needle) {
  try {
    Predictor p(path);
    FAIL() << "no error for " << path;
  } catch (const DataError& e) {
    std::string what = e.what();
    EXPECT_NE(what.find(path), std::string::npos) << what;
    EXPECT_NE(what.find(needle), std::string::npos) << what;
  }
}

TEST(Serve, LoadsInt8Export) {
  Predictor p(edited_export("ok.h5", nullptr));
  EXPECT_EQ(p.model().storage, "int8_rowwise");
}

TEST(Serve, RefusesWrongSchemaVersion) {
  std::string p = edited_export("v2.h5", [](hid_t f) {
    hid_t a = H5Aopen(f, "schema_version", H5P_DEFAULT);
    int64_t v = 2;
    H5Awrite(a, H5T_NATIVE_INT64, &v);
    H5Aclose(a);
  });
  expect_data_error(p, "schema_version 2 is not supported");
}

TEST(Serve, RefusesMissingDataset) {
  std::string p = edited_export("missing.h5", [](hid_t f) { H5Ldelete(f, "/dense/top_mlp.0.bias", H5P_DEFAULT); });
  expect_data_error(p, "dataset '/dense/top_mlp.0.bias' not found");
  p = edited_export("missing_scale.h5", [](hid_t f) { H5Ldelete(f, "/embeddings/3/scale", H5P_DEFAULT); });
  expect_data_error(p, "dataset '/embeddings/3/scale' not found");
}

TEST(Serve, RefusesShapeMismatch) {
  std::string p = edited_export("shape.h5", [](hid_t f) {
    hid_t a = H5Aopen(f, "embedding_dim", H5P_DEFAULT);
    int64_t v = 4;
    H5Awrite(a, H5T_NATIVE_INT64, &v);
    H5Aclose(a);
  });
  expect_data_error(p, "the stored hyper-parameters do not make a model");
  p = edited_export("pipeline.h5", [](hid_t f) { H5Adelete_by_name(f, "/feature_pipeline", "hash_buckets", H5P_DEFAULT); });
  expect_data_error(p, "attribute 'hash_buckets' of '/feature_pipeline' not found");
}

TEST(Serve, RefusesTruncatedFile) {
  std::string full = edited_export("full.h5", nullptr);
  std::string p = (work_dir() / "truncated.h5").string();
  {
    std::string bytes = rf::test::slurp(full);
    std::ofstream out(p, std::ios::binary);
    out.write(bytes.data(), static_cast<std::streamsize>(bytes.size() / 2));
  }
  expect_data_error(p, "truncated");
}

TEST(Serve, BadRowsNameFileAndLine) {
  Predictor p(edited_export("rows.h5", nullptr));
  std::string rows = (work_dir() / "bad.tsv").string();
  {
    std::ifstream in(work_dir() / "test.tsv");
    std::string line;
    std::ofstream out(rows);
    for (int i = 0; i < 3 && std::getline(in, line); ++i) out << line << "\n";
    out << "1\tnot-a-number" << std::string(38, '\t') << "\n";
  }
  try {
    p.predict_file(rows);
    FAIL() << "no error";
  } catch (const DataError& e) {
    EXPECT_NE(std::string(e.what()).find("bad.tsv:4: field 2 (dense 1): expected a number"), std::string::npos)
        << e.what();
  }
}

}  // namespace
}  // namespace rf::serve
