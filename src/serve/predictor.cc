// Predictor (see predictor.h).
#include "src/serve/predictor.h"

#include <zlib.h>

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstring>

#include "dataloader/tsv_reader.h"
#include "src/core/error.h"

namespace rf::serve {
namespace {

// Tab count + 1 of the first line of a (possibly gzip) file; -1 when the file is empty.
int first_line_fields(const std::string& path) {
  gzFile f = gzopen(path.c_str(), "rb");
  if (!f) throw DataError("cannot open " + path + ": " + std::strerror(errno));
  int fields = 1;
  bool any = false;
  char buf[65536];
  for (;;) {
    int n = gzread(f, buf, sizeof buf);
    if (n <= 0) break;
    char* nl = static_cast<char*>(std::memchr(buf, '\n', static_cast<size_t>(n)));
    int len = nl ? static_cast<int>(nl - buf) : n;
    if (len > 0 || nl) any = true;
    fields += static_cast<int>(std::count(buf, buf + len, '\t'));
    if (nl) break;
  }
  gzclose(f);
  return any ? fields : -1;
}

}  // namespace

Predictor::Predictor(const std::string& export_path, Device device) : export_(load_export(export_path, device)) {}

data::ColumnSchema Predictor::schema_without_label() const {
  data::ColumnSchema s = export_.schema;
  s.columns.erase(std::remove_if(s.columns.begin(), s.columns.end(),
                                 [](const data::Column& c) { return c.kind == data::ColumnKind::kLabel; }),
                  s.columns.end());
  return s;
}

std::vector<float> Predictor::predict(const data::Batch& batch, std::vector<float>* logits_out) {
  const int64_t n = batch.size();
  std::vector<float> probs(static_cast<size_t>(n));
  if (logits_out) logits_out->resize(static_cast<size_t>(n));
  if (n == 0) return probs;
  const Device device = export_.config.device;
  const data::Batch on_device = data::batch_to(batch, device);
  ModelInput in;
  in.dense = on_device.dense;
  in.indices = on_device.indices;
  in.offsets = on_device.offsets;
  Tensor logits = Tensor::empty({n}, DType::kF32, device);
  export_.model->forward(in, logits);
  const std::vector<float> host_logits = logits.to_vector<float>();
  const float* l = host_logits.data();
  for (int64_t i = 0; i < n; ++i) {
    probs[static_cast<size_t>(i)] = static_cast<float>(1.0 / (1.0 + std::exp(-static_cast<double>(l[i]))));
    if (logits_out) (*logits_out)[static_cast<size_t>(i)] = l[i];
  }
  return probs;
}

std::vector<float> Predictor::predict_file(const std::string& tsv, int64_t batch_size, std::vector<float>* labels) {
  const data::ColumnSchema& stored = export_.schema;
  const int with = stored.num_columns();
  const int fields = first_line_fields(tsv);
  if (labels) labels->clear();
  if (fields < 0) return {};
  data::ColumnSchema schema = stored;
  bool has_label = stored.has_label();
  if (has_label && fields == with - 1) {
    schema = schema_without_label();
    has_label = false;
  } else if (fields != with) {
    throw DataError(tsv + ":1: expected " + std::to_string(with) + " tab-separated fields" +
                    (stored.has_label() ? " (or " + std::to_string(with - 1) + " without the label)" : "") +
                    ", got " + std::to_string(fields) + " (the export's feature pipeline has " +
                    std::to_string(with) + " columns)");
  }
  data::TsvReader reader(schema, {tsv});
  std::vector<float> out;
  data::Batch b;
  while (reader.next(b, batch_size)) {
    std::vector<float> p = predict(b);
    out.insert(out.end(), p.begin(), p.end());
    if (labels && has_label) {
      const float* y = b.labels.data<float>();
      labels->insert(labels->end(), y, y + b.size());
    }
  }
  return out;
}

}  // namespace rf::serve
