// The embedding-update hook (Model::set_embedding_update) on the CPU, where the trainer never installs
// it: both models hand their tables, the batch's lookups and the pooled gradient to the hook in place of
// filling the sparse gradients, and fall back to them when the hook declines. The GPU path behind it
// (the fused kernels) is tested in tests/gpu_train and tests/kernels.
#include <gtest/gtest.h>

#include "dataloader/batch.h"
#include "kernels/embedding_bag.h"
#include "src/config/config.h"
#include "src/model/model.h"
#include "src/train/data_source.h"
#include "src/train/trainer.h"
#include "tests/common/model_fixtures.h"

namespace rf {
namespace {

ModelConfig small_model(const std::string& type) { return test::small_model(type, Device::cpu()); }

ModelInput random_input(const ModelConfig& m, int64_t batch, uint64_t seed) {
  return model_input(test::random_batch(m, batch, seed));
}

// Forward and backward of a fresh model on `in` with `update` installed; returns the model.
std::unique_ptr<Model> step(const ModelConfig& mc, const ModelInput& in, EmbeddingUpdate update) {
  std::unique_ptr<Model> model = make_model(mc);
  model->set_embedding_update(std::move(update));
  Tensor logits = Tensor::empty({in.batch()}, DType::kF32);
  model->forward(in, logits);
  Tensor dlogits = Tensor::from_vector(std::vector<float>(static_cast<size_t>(in.batch()), 0.25f), {in.batch()});
  model->backward(in, dlogits);
  return model;
}

std::vector<const Parameter*> tables_of(Model& m) {
  std::vector<const Parameter*> out;
  for (const Parameter* p : m.parameters())
    if (p->sparse) out.push_back(p);
  return out;
}

TEST(EmbeddingUpdate, ModelsHandTheirTablesToTheHookInsteadOfSparseGradients) {
  for (const std::string type : {"dlrm", "dcnv2"}) {
    SCOPED_TRACE(type);
    const ModelConfig mc = small_model(type);
    const ModelInput in = random_input(mc, 24, 11);
    std::unique_ptr<Model> plain = step(mc, in, {});
    const std::vector<const Parameter*> want = tables_of(*plain);
    ASSERT_EQ(want.size(), mc.table_sizes.size());

    // A hook that takes the tables: it sees every table in order with the batch's lookups, and the
    // sparse gradients it recomputes from the pooled gradient are the ones the backward would have set.
    int calls = 0;
    std::unique_ptr<Model> hooked = step(mc, in, [&](const ParameterList& tables, const std::vector<Tensor>& indices,
                                                     const std::vector<Tensor>& offsets, const Tensor& grad_pooled,
                                                     PoolMode mode) {
      ++calls;
      EXPECT_EQ(tables.size(), mc.table_sizes.size());
      EXPECT_EQ(grad_pooled.shape(), (Shape{in.batch(), mc.embedding_dim * static_cast<int64_t>(tables.size())}));
      std::vector<int64_t> rows;
      for (size_t t = 0; t < tables.size(); ++t) {
        EXPECT_EQ(tables[t]->name, want[t]->name);
        EXPECT_EQ(indices[t].to_vector<int64_t>(), in.indices[t].to_vector<int64_t>());
        rows.push_back(tables[t]->value.size(0));
      }
      std::vector<SparseGrad> g = embedding_bags_backward(indices, offsets, grad_pooled, mode, rows);
      for (size_t t = 0; t < tables.size(); ++t) {
        EXPECT_EQ(g[t].rows.to_vector<int64_t>(), want[t]->sparse_grad.rows.to_vector<int64_t>()) << t;
        EXPECT_EQ(g[t].values.to_vector<float>(), want[t]->sparse_grad.values.to_vector<float>()) << t;
      }
      return true;
    });
    EXPECT_EQ(calls, 1);
    for (const Parameter* p : tables_of(*hooked)) EXPECT_FALSE(p->sparse_grad.rows.defined()) << p->name;

    // A hook that declines: the backward fills the sparse gradients itself, the same as without a hook.
    std::unique_ptr<Model> declined = step(mc, in, [](const ParameterList&, const std::vector<Tensor>&,
                                                      const std::vector<Tensor>&, const Tensor&, PoolMode) { return false; });
    const std::vector<const Parameter*> got = tables_of(*declined);
    for (size_t t = 0; t < got.size(); ++t) {
      ASSERT_TRUE(got[t]->sparse_grad.rows.defined()) << got[t]->name;
      EXPECT_EQ(got[t]->sparse_grad.values.to_vector<float>(), want[t]->sparse_grad.values.to_vector<float>());
    }
  }
}

TEST(EmbeddingUpdate, TheCpuTrainerKeepsTheSparseGradientPath) {
  const ModelConfig mc = small_model("dlrm");
  Trainer trainer(Config::defaults().with_overrides({"--train.threads=1", "--optimizer.sparse=rowwise_adagrad"}), mc);
  data::Batch b;
  const ModelInput in = random_input(mc, 16, 3);
  b.dense = in.dense;
  b.indices = in.indices;
  b.offsets = in.offsets;
  b.labels = Tensor::zeros({16}, DType::kF32);
  trainer.train_step(b);
  for (const Parameter* p : tables_of(trainer.model())) EXPECT_TRUE(p->sparse_grad.rows.defined()) << p->name;
}

}  // namespace
}  // namespace rf
