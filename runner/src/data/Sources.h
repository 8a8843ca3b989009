#pragma once
// The loaders behind loadData(), one per DataConfig.source, before the validation / train_size /
// test_size splits. Internal to runner/src/data (tests include it to reach the pieces).

#include "Data.h"

#include <cstdint>
#include <string>
#include <vector>

namespace repshape::data {

// A source as stored: its full training and test sets.
struct SourceData {
  Dataset train, test;
  int64_t numClasses = 0;
  std::vector<int64_t> sampleShape;
  std::string description;
};

// $REPSHAPE_DATA_DIR when set, else $HOME/.local/share/repshape: where deploy/import-mnist.sh
// writes and where mnist, cifar10, cifar100 and strokes are looked for by default.
std::string dataRoot();

// IDX pairs train-{images-idx3,labels-idx1}-ubyte and t10k-{...}-ubyte, each raw or `.gz`.
// `numClasses` > 0: labels must lie in [0, numClasses); 0: numClasses = max label + 1.
SourceData loadIdxDirectory(const std::string& dir, int64_t numClasses);

// CIFAR binary version: data_batch_1..5.bin + test_batch.bin (cifar10, 1 + 3072-byte records) or
// train.bin + test.bin (cifar100, 2 + 3072-byte records: coarse, fine; the fine label is used).
// `dir` may also be the folder that holds the extracted cifar-10-batches-bin / cifar-100-binary.
SourceData loadCifar10(const std::string& dir);
SourceData loadCifar100(const std::string& dir);

// MNIST pen-stroke sequences (de Jong 2016): see Strokes.cpp for the expected layout.
SourceData loadStrokes(const std::string& dir);

// Synthetic generators (SPEC §5); see Synthetic.cpp for the distributions.
struct ProjectionData {
  SourceData data;
  torch::Tensor mixing;     // Ω [inputDim, factors]
  torch::Tensor variances;  // diag(Σ) [factors], decreasing
};
ProjectionData generateProjection(const DataConfig& config, uint64_t seed);
SourceData generateXor(const DataConfig& config, uint64_t seed);
struct FactorsData {
  SourceData data;
  torch::Tensor mixing;     // Q [inputDim, factors], orthonormal columns
  torch::Tensor centroids;  // [numClasses, factors], vertices of {-1, +1}^factors
};
FactorsData generateFactors(const DataConfig& config, uint64_t seed);

// The k-th independent 64-bit stream derived from `seed` (splitmix64), so that e.g. the test set
// does not change when `samples` does.
uint64_t streamSeed(uint64_t seed, uint64_t stream);

// Applies numClasses filtering, validation / train_size / test_size to a loaded source.
DataSplits splitSource(SourceData source, const DataConfig& config, uint64_t seed);

}  // namespace repshape::data
