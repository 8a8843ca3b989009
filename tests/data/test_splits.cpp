// loadData(): seeded validation / train_size / test_size splits, sources and error messages.

#include "ExpectError.h"
#include "TestFiles.h"
#include "data/Sources.h"

#include <gtest/gtest.h>

#include <cstdlib>
#include <filesystem>

namespace repshape::data {
namespace {

using test::expectDataError;
using test::TempDir;

DataConfig projection(int64_t samples, int64_t trainSize, int64_t validationSize) {
  DataConfig config;
  config.source = "projection";
  config.samples = samples;
  config.testSamples = 50;
  config.trainSize = trainSize;
  config.validationSize = validationSize;
  return config;
}

// Index in `all` [N, D] of each row of `rows` [M, D] (rows are continuous, hence unique); -1 if absent.
std::vector<int64_t> rowIndices(const torch::Tensor& rows, const torch::Tensor& all) {
  std::vector<int64_t> index;
  if (rows.size(0) == 0) return index;
  // compute_mode 2: exact differences, not the matrix-product expansion (which is not exactly 0).
  const auto distances = torch::cdist(rows.to(torch::kFloat64), all.to(torch::kFloat64), 2.0, 2);  // [M, N]
  const auto [best, where] = distances.min(1);
  for (int64_t i = 0; i < rows.size(0); ++i)
    index.push_back(best[i].item<double>() == 0.0 ? where[i].item<int64_t>() : -1);
  return index;
}

TEST(Splits, DisjointDeterministicAndSized) {
  const uint64_t seed = 21;
  const auto config = projection(1000, 300, 100);
  const auto splits = loadData(config, seed);
  ASSERT_EQ(splits.train.size(), 300);
  ASSERT_EQ(splits.validation.size(), 100);
  ASSERT_EQ(splits.test.size(), 50);
  EXPECT_EQ(splits.sampleShape, (std::vector<int64_t>{10}));
  EXPECT_NE(splits.description.find("train 300, validation 100"), std::string::npos) << splits.description;

  // Both splits are drawn from the generated training set, without overlap or repeats.
  const auto source = generateProjection(config, seed).data;
  const auto trainIndex = rowIndices(splits.train.inputs, source.train.inputs);
  const auto validationIndex = rowIndices(splits.validation.inputs, source.train.inputs);
  std::vector<int> seen(1000, 0);
  for (int64_t i : trainIndex) {
    ASSERT_GE(i, 0);
    ++seen[static_cast<size_t>(i)];
  }
  for (int64_t i : validationIndex) {
    ASSERT_GE(i, 0);
    ++seen[static_cast<size_t>(i)];
  }
  EXPECT_EQ(*std::max_element(seen.begin(), seen.end()), 1);
  EXPECT_TRUE(torch::equal(splits.test.inputs, source.test.inputs));

  const auto again = loadData(config, seed);
  EXPECT_TRUE(torch::equal(again.train.inputs, splits.train.inputs));
  EXPECT_TRUE(torch::equal(again.validation.inputs, splits.validation.inputs));
}

TEST(Splits, SmallerTrainSizeIsNestedAndValidationFixed) {
  const auto large = loadData(projection(1000, 500, 100), 4);
  const auto small = loadData(projection(1000, 100, 100), 4);
  EXPECT_TRUE(torch::equal(small.validation.inputs, large.validation.inputs));
  EXPECT_TRUE(torch::equal(small.train.inputs, large.train.inputs.slice(0, 0, 100)));
  const auto all = loadData(projection(1000, 0, 100), 4);  // train_size 0: the rest
  EXPECT_EQ(all.train.size(), 900);
}

TEST(Splits, SeedFromConfigOverridesArgument) {
  auto config = projection(500, 0, 50);
  const auto a = loadData(config, 1), b = loadData(config, 2);
  EXPECT_FALSE(torch::equal(a.train.inputs, b.train.inputs));
  config.seed = 9;
  EXPECT_TRUE(torch::equal(loadData(config, 1).train.inputs, loadData(config, 2).train.inputs));
  EXPECT_TRUE(torch::equal(loadData(config, 1).train.inputs, loadData(projection(500, 0, 50), 9).train.inputs));
}

TEST(Splits, TestSizeTakesTheFirstSamples) {
  auto config = projection(200, 0, 0);
  config.testSize = 20;
  const auto splits = loadData(config, 3);
  const auto full = generateProjection(config, 3).data.test;
  EXPECT_TRUE(torch::equal(splits.test.inputs, full.inputs.slice(0, 0, 20)));
}

TEST(Splits, Errors) {
  expectDataError([] { loadData(projection(100, 80, 30), 1); },
                  {"data.train_size (80) + data.validation_size (30) = 110", "has 100 training samples"});
  expectDataError([] { loadData(projection(100, 0, 100), 1); }, {"data.validation_size (100)", "at least one"});
  auto config = projection(100, 0, 0);
  config.testSize = 51;
  expectDataError([&] { loadData(config, 1); }, {"data.test_size = 51", "has 50 test samples"});
  config = projection(100, 0, 0);
  config.numClasses = 2;
  expectDataError([&] { loadData(config, 1); }, {"data.num_classes = 2", "has only 1 classes"});
  config.source = "imagenet";
  expectDataError([&] { loadData(config, 1); }, {"data.source = \"imagenet\"", "unknown source", "cifar100"});
  config = DataConfig{};
  config.source = "idx";
  expectDataError([&] { loadData(config, 1); }, {"data.dir", "idx", "train-images-idx3-ubyte"});
  config.dir = "/nonexistent/repshape-data";
  expectDataError([&] { loadData(config, 1); }, {"data.dir", "/nonexistent/repshape-data", "directory not found"});
  config.source = "cifar10";
  expectDataError([&] { loadData(config, 1); }, {"/nonexistent/repshape-data", "CIFAR-10 binary"});
}

TEST(Splits, MnistDefaultDirectoryFromEnvironment) {
  TempDir root("data-root");
  const std::string dir = root / "mnist";
  test::writeGzip(dir + "/train-images-idx3-ubyte.gz", test::idxImages(test::randomBytes(6 * 784, 1), 6, 28, 28));
  test::writeGzip(dir + "/train-labels-idx1-ubyte.gz", test::idxLabels({0, 1, 2, 3, 4, 5}));
  test::writeGzip(dir + "/t10k-images-idx3-ubyte.gz", test::idxImages(test::randomBytes(2 * 784, 2), 2, 28, 28));
  test::writeGzip(dir + "/t10k-labels-idx1-ubyte.gz", test::idxLabels({6, 9}));
  const char* previous = std::getenv("REPSHAPE_DATA_DIR");
  const std::string saved = previous ? previous : "";
  ::setenv("REPSHAPE_DATA_DIR", root.path().c_str(), 1);
  DataConfig config;
  config.source = "mnist";
  config.validationSize = 2;
  const auto splits = loadData(config, 5);
  EXPECT_EQ(splits.numClasses, 10);
  EXPECT_EQ(splits.train.size(), 4);
  EXPECT_EQ(splits.sampleShape, (std::vector<int64_t>{1, 28, 28}));
  // Every training label appears exactly once across train and validation.
  const auto labels = std::get<0>(torch::sort(torch::cat({splits.train.labels, splits.validation.labels})));
  EXPECT_TRUE(torch::equal(labels, torch::arange(6, torch::kInt64)));
  ::setenv("REPSHAPE_DATA_DIR", (root / "elsewhere").c_str(), 1);
  expectDataError([&] { loadData(config, 5); }, {root / "elsewhere/mnist", "deploy/import-mnist.sh"});
  if (previous) ::setenv("REPSHAPE_DATA_DIR", saved.c_str(), 1); else ::unsetenv("REPSHAPE_DATA_DIR");
}

TEST(Splits, FashionMnistThroughLoadData) {
  if (!std::filesystem::exists("/usr/share/datasets/fashion-mnist/t10k-images-idx3-ubyte.gz"))
    GTEST_SKIP() << "Debian package dataset-fashion-mnist not installed";
  DataConfig config;  // source fashion-mnist, default directory
  config.trainSize = 1000;
  config.validationSize = 5000;
  config.testSize = 500;
  const auto splits = loadData(config, 0);
  ASSERT_EQ(splits.train.inputs.sizes(), (std::vector<int64_t>{1000, 1, 28, 28}));
  ASSERT_EQ(splits.validation.inputs.sizes(), (std::vector<int64_t>{5000, 1, 28, 28}));
  ASSERT_EQ(splits.test.inputs.sizes(), (std::vector<int64_t>{500, 1, 28, 28}));
  EXPECT_EQ(splits.train.inputs.dtype(), torch::kFloat32);
  EXPECT_GE(splits.train.inputs.min().item<float>(), 0.0f);
  EXPECT_LE(splits.train.inputs.max().item<float>(), 1.0f);
  EXPECT_EQ(splits.numClasses, 10);
  EXPECT_EQ(splits.train.labels.dtype(), torch::kInt64);
}

}  // namespace
}  // namespace repshape::data
