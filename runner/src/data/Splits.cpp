// Class filtering and the train / validation / test splits shared by every source.

#include "Data.h"
#include "Sources.h"

#include <ATen/CPUGeneratorImpl.h>

#include <algorithm>
#include <sstream>
#include <utility>

namespace repshape::data {
namespace {

constexpr uint64_t kSplitStream = 3;  // streamSeed() stream of the split permutation

Dataset keepClasses(const Dataset& set, int64_t numClasses) {
  const auto index = set.labels.lt(numClasses).nonzero().select(1, 0);
  return {set.inputs.index_select(0, index), set.labels.index_select(0, index)};
}

Dataset take(const Dataset& set, const torch::Tensor& index) {
  return {set.inputs.index_select(0, index), set.labels.index_select(0, index)};
}

}  // namespace

DataSplits splitSource(SourceData source, const DataConfig& config, uint64_t seed) {
  const std::string where = "data.source = \"" + config.source + "\" (" + source.description + ")";
  for (const auto& [value, key] : {std::pair{config.trainSize, "train_size"},
                                   std::pair{config.validationSize, "validation_size"},
                                   std::pair{config.testSize, "test_size"},
                                   std::pair{config.numClasses, "num_classes"}})
    if (value < 0)
      throw DataError(std::string("data.") + key + " = " + std::to_string(value) + ": expected >= 0");

  // num_classes K below the source's count keeps only the samples of classes 0..K-1 (CIFAR-100's
  // 16 / 64-class conditions of Choi et al.), before any split.
  int64_t numClasses = source.numClasses;
  if (config.numClasses > 0 && config.numClasses != numClasses) {
    if (config.numClasses > numClasses)
      throw DataError("data.num_classes = " + std::to_string(config.numClasses) + ": " + where + " has only " +
                      std::to_string(numClasses) + " classes");
    numClasses = config.numClasses;
    source.train = keepClasses(source.train, numClasses);
    source.test = keepClasses(source.test, numClasses);
  }

  const int64_t available = source.train.size();
  const int64_t validation = config.validationSize;
  const int64_t train = config.trainSize > 0 ? config.trainSize : available - validation;
  if (validation + std::max<int64_t>(config.trainSize, 0) > available || train <= 0) {
    std::ostringstream msg;
    msg << "data.train_size (" << config.trainSize << ") + data.validation_size (" << validation << ") = "
        << config.trainSize + validation << ": " << where << " has " << available
        << " training samples; expected a sum <= " << available << " that leaves at least one for training";
    throw DataError(msg.str());
  }
  if (config.testSize > source.test.size())
    throw DataError("data.test_size = " + std::to_string(config.testSize) + ": " + where + " has " +
                    std::to_string(source.test.size()) + " test samples");

  // One permutation: its first `validation` entries are the validation set and the next `train`
  // the training set, so validation never depends on train_size and a smaller train_size is a
  // subset of a larger one (same seed).
  auto gen = at::make_generator<at::CPUGeneratorImpl>(streamSeed(seed, kSplitStream));
  const auto order = torch::randperm(available, gen, torch::kInt64);
  DataSplits splits;
  splits.validation = take(source.train, order.slice(0, 0, validation));
  splits.train = take(source.train, order.slice(0, validation, validation + train));
  // test_size: the first N test samples in file order (deterministic without a seed).
  splits.test = config.testSize > 0 ? Dataset{source.test.inputs.slice(0, 0, config.testSize),
                                              source.test.labels.slice(0, 0, config.testSize)}
                                    : source.test;
  splits.numClasses = numClasses;
  splits.originalClasses = numClasses;
  splits.sampleShape = source.sampleShape;
  applyTransforms(config, splits);
  std::ostringstream description;
  description << config.source << " " << source.description << ": train " << splits.train.size()
              << ", validation " << splits.validation.size() << " (of " << available << ", split seed " << seed
              << "), test " << splits.test.size() << ", " << splits.numClasses << " classes";
  if (!config.relabel.empty()) description << " (grouped from " << numClasses << ")";
  if (config.pcaDims > 0) description << ", top " << config.pcaDims << " principal components of the training split";
  splits.description = description.str();
  return splits;
}

}  // namespace repshape::data
