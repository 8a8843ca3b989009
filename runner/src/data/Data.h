#pragma once
// Datasets: the standard files a user downloads (IDX, CIFAR binary, pen strokes) and the synthetic
// generators of SPEC §5, split into train / validation / test by seed. Everything in memory.

#include "Config.h"

#include <torch/torch.h>

#include <cstdint>
#include <string>
#include <vector>

namespace repshape::data {

// A missing or malformed data file: names the file and what was expected. Exit code 2, like a
// config error, and raised before any training starts.
class DataError : public ConfigError {
 public:
  using ConfigError::ConfigError;
};

struct Dataset {
  torch::Tensor inputs;  // [N, ...sampleShape] float32 (images scaled to [0, 1])
  torch::Tensor labels;  // [N] int64 in [0, numClasses)
  // [N] int64: the source's labels before data.relabel (undefined when no relabel). Clustering
  // AMI/NMI scores against these (Romanov clusters FC_1 against the 10 digits of a binary task).
  torch::Tensor originalLabels = {};  // (default: aggregate {inputs, labels} stays warning-free)
  const torch::Tensor& fineLabels() const { return originalLabels.defined() ? originalLabels : labels; }
  int64_t size() const { return labels.defined() ? labels.size(0) : 0; }
};

struct DataSplits {
  Dataset train, validation, test;
  int64_t numClasses = 0;            // classes of the task (groups, after data.relabel)
  int64_t originalClasses = 0;       // classes of the source (= numClasses without relabel)
  std::vector<int64_t> sampleShape;  // e.g. {1, 28, 28}, {3, 32, 32}, {10}; {pca_dims} after PCA
  std::string description;           // e.g. "fashion-mnist /usr/share/datasets/fashion-mnist"
};

// Loads `config` deterministically from `seed` (config.seed when set): the validation split and
// train_size subset are drawn from one seeded permutation of the training set.
DataSplits loadData(const DataConfig& config, uint64_t seed);

// The directory a file source reads (data.dir or its default), checked to exist without reading
// it: a DataError saying where the user puts the files (what `repshape grid --run` checks for every
// cell before any work). "" for the synthetic generators.
std::string checkDataAvailable(const DataConfig& config);

// data.relabel and data.pca_dims on split data (Transforms.cpp): labels grouped (originals kept),
// inputs projected on the training split's top principal components. Throws DataError starting
// with the key ("data.relabel: …", "data.pca_dims = …").
void applyTransforms(const DataConfig& config, DataSplits& splits);

// Lengths int64 [N] of zero-padded pen-stroke sequences [N, T, 4] (`dx dy eos eod`, source
// "strokes"): each sequence ends at its only row with eod = 1.
torch::Tensor sequenceLengths(const torch::Tensor& strokes);

}  // namespace repshape::data
