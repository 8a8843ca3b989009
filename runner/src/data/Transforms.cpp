// data.relabel and data.pca_dims, applied to the splits after they are drawn (so neither changes
// which samples land in which split).
//
// relabel: class c of the source becomes the index g of the group that lists it; the source label
//   is kept in Dataset::originalLabels for clustering scores.
// pca_dims = d (Choi §4.3, "PCA-top-d MNIST"): the mean μ [D] and the covariance of the flattened
//   TRAINING split only (fp64), its d leading eigenvectors V [D, d] (eigenvalues decreasing, each
//   vector's sign fixed so that its largest-|entry| is positive), and every split becomes
//   (x − μ) V, float32 [N, d] — what scikit-learn's PCA(d).fit(train).transform(·) gives up to signs.

#include "Data.h"


namespace repshape::data {
namespace {

void relabel(const DataConfig& config, DataSplits& splits) {
  const int64_t classes = splits.numClasses;
  std::vector<int64_t> groupOf(static_cast<std::size_t>(classes), -1);  // source class → group
  for (std::size_t g = 0; g < config.relabel.size(); ++g)
    for (int64_t c : config.relabel[g]) {
      if (c >= classes)
        throw DataError("data.relabel[" + std::to_string(g) + "]: class " + std::to_string(c) + " but data.source = \"" +
                        config.source + "\" has " + std::to_string(classes) + " classes (0.." +
                        std::to_string(classes - 1) + ")");
      groupOf[static_cast<std::size_t>(c)] = static_cast<int64_t>(g);
    }
  for (int64_t c = 0; c < classes; ++c)
    if (groupOf[static_cast<std::size_t>(c)] < 0)
      throw DataError("data.relabel: class " + std::to_string(c) + " of data.source = \"" + config.source + "\" (" +
                      std::to_string(classes) + " classes) is in no group; list every class once");
  const torch::Tensor map = torch::tensor(groupOf, torch::kInt64);  // [K]
  for (Dataset* set : {&splits.train, &splits.validation, &splits.test}) {
    if (!set->labels.defined()) continue;
    set->originalLabels = set->labels;
    set->labels = map.index_select(0, set->labels);
  }
  splits.originalClasses = classes;
  splits.numClasses = static_cast<int64_t>(config.relabel.size());
}

void projectOnPrincipalComponents(const DataConfig& config, DataSplits& splits) {
  const int64_t d = config.pcaDims;
  const torch::Tensor train = splits.train.inputs.flatten(1).to(torch::kFloat64);  // [N, D]
  const int64_t dims = train.size(1), rows = train.size(0);
  if (d > dims)
    throw DataError("data.pca_dims = " + std::to_string(d) + ": data.source = \"" + config.source + "\" has " +
                    std::to_string(dims) + " input dimensions per sample; expected at most " + std::to_string(dims));
  if (rows < 2)
    throw DataError("data.pca_dims = " + std::to_string(d) + ": the training split has " + std::to_string(rows) +
                    " sample(s); principal components need at least 2");
  const torch::Tensor mean = train.mean(0);  // [D]
  const torch::Tensor centred = train - mean;
  const torch::Tensor covariance = centred.t().matmul(centred) / static_cast<double>(rows - 1);  // [D, D]
  const auto [values, vectors] = torch::linalg_eigh(covariance);  // ascending eigenvalues
  torch::Tensor components = vectors.narrow(1, dims - d, d).flip({1});  // [D, d], leading first
  const torch::Tensor peak = components.abs().argmax(0, true);          // [1, d]
  components = components * components.gather(0, peak).sign().clamp_min(0).mul(2).sub(1);
  for (Dataset* set : {&splits.train, &splits.validation, &splits.test}) {
    if (!set->inputs.defined()) continue;
    const torch::Tensor flat = set->inputs.flatten(1).to(torch::kFloat64);
    set->inputs = (flat - mean).matmul(components).to(torch::kFloat32).contiguous();
  }
  splits.sampleShape = {d};
}

}  // namespace

void applyTransforms(const DataConfig& config, DataSplits& splits) {
  if (!config.relabel.empty()) relabel(config, splits);
  if (config.pcaDims > 0) projectOnPrincipalComponents(config, splits);
}

}  // namespace repshape::data
