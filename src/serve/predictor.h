// The CPU predictor: loads a validated export, turns raw TSV rows into model inputs with the stored
// feature pipeline (the training reader itself, configured from the file), and scores them with the
// same model code the trainer runs. No MPI, trainer or optimizer behind it.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "dataloader/batch.h"
#include "src/serve/export.h"

namespace rf::serve {

class Predictor {
 public:
  // DataError on a bad export. `device`: where the model runs (a GPU when one is given).
  explicit Predictor(const std::string& export_path, Device device = Device::cpu());

  // Click probabilities sigmoid(logit) for one parsed batch, in row order.
  std::vector<float> predict(const data::Batch& batch, std::vector<float>* logits = nullptr);

  // Scores every row of a TSV file (plain or gzip). Rows carry the label column or not: the file's
  // first line decides (the stored column count, or one fewer when the stored schema has a label);
  // every other row must have the same count. Bad rows throw DataError "file:line: why".
  // `labels` (optional) receives the labels when the rows have them, else stays empty.
  std::vector<float> predict_file(const std::string& tsv, int64_t batch_size = 4096,
                                  std::vector<float>* labels = nullptr);

  const LoadedExport& model() const { return export_; }
  // The column schema of rows without the label column (equal to the stored one when it has none).
  data::ColumnSchema schema_without_label() const;

 private:
  LoadedExport export_;
};

}  // namespace rf::serve
