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
  int64_t size() const { return labels.defined() ? labels.size(0) : 0; }
};

struct DataSplits {
  Dataset train, validation, test;
  int64_t numClasses = 0;
  std::vector<int64_t> sampleShape;  // e.g. {1, 28, 28}, {3, 32, 32}, {10}
  std::string description;           // e.g. "fashion-mnist /usr/share/datasets/fashion-mnist"
};

// Loads `config` deterministically from `seed` (config.seed when set): the validation split and
// train_size subset are drawn from one seeded permutation of the training set.
DataSplits loadData(const DataConfig& config, uint64_t seed);

// Lengths int64 [N] of zero-padded pen-stroke sequences [N, T, 4] (`dx dy eos eod`, source
// "strokes"): each sequence ends at its only row with eod = 1.
torch::Tensor sequenceLengths(const torch::Tensor& strokes);

}  // namespace repshape::data
